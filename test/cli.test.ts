import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromFloat32, planShards, readSafetensors, serializeSafetensors, toFloat32 } from '@lora-edge/shared';
import { afterAll, describe, expect, it } from 'vitest';
import { ADAPTERS, ALL_ADAPTERS, FIXTURES, flatten, maxRelError, readBytes, readJson, STORIES } from './fixtures.ts';

const BIN = join(import.meta.dirname, '..', 'cli', 'bin', 'lora-edge.mjs');
const work = mkdtempSync(join(tmpdir(), 'lora-edge-cli-'));
afterAll(() => spawnSync('rm', ['-rf', work]));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

interface MergedRef {
  merged_modules: Record<string, { merged_weight: number[][] }>;
}

describe('lora-edge fuse', () => {
  it.each(ALL_ADAPTERS)('fuses %s into stories260k: fused modules equal PEFT, the rest bit for bit', (name) => {
    const out = join(work, `fused-${name}`);
    const r = cli('fuse', '--model', STORIES, '--adapter', join(ADAPTERS, name), '--out', out, '--quiet');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const fused = readSafetensors(readBytes(join(out, 'model.safetensors')));
    const base = readSafetensors(readBytes(join(STORIES, 'model.safetensors')));
    const ref = readJson<MergedRef & { modules: Record<string, unknown> }>(join(ADAPTERS, name, 'reference.json'));
    expect(r.stdout).toContain(
      `${Object.keys(ref.modules).length} tensors fused, ${47 - Object.keys(ref.modules).length} copied unchanged`,
    );
    for (const [module, m] of Object.entries(ref.merged_modules)) {
      expect(maxRelError(toFloat32(fused.tensor(`${module}.weight`)), flatten(m.merged_weight))).toBeLessThanOrEqual(1e-6);
    }
    const touched = new Set(Object.keys(ref.modules).map((m) => `${m}.weight`));
    for (const n of base.names()) {
      if (touched.has(n)) continue;
      expect(Buffer.from(fused.tensor(n).data).equals(Buffer.from(base.tensor(n).data)), n).toBe(true);
    }
    expect(fused.names()).toEqual(base.names());
    expect(readFileSync(join(out, 'config.json'), 'utf8')).toContain('"model_type": "llama"');
    expect(JSON.parse(fused.header.metadata?.lora_edge ?? '{}').adapters[0].sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('fuses the weighted three-adapter mix, written as bf16 on request', () => {
    const ref = readJson<{ adapters: string[]; weights: number[]; fused_module: { name: string; fused_weight: number[][] } }>(
      join(ADAPTERS, 'mixes', 'reference.json'),
    );
    const out = join(work, 'mix');
    const args = ref.adapters.flatMap((a, i) => ['--adapter', `${join(ADAPTERS, a)}:${ref.weights[i]}`]);
    expect(cli('fuse', '--model', STORIES, ...args, '--out', out, '--quiet').code).toBe(0);
    const fused = readSafetensors(readBytes(join(out, 'model.safetensors')));
    const want = flatten(ref.fused_module.fused_weight);
    expect(maxRelError(toFloat32(fused.tensor(`${ref.fused_module.name}.weight`)), want)).toBeLessThanOrEqual(1e-6);

    const outBf16 = join(work, 'mix-bf16');
    expect(cli('fuse', '--model', STORIES, ...args, '--out', outBf16, '--dtype', 'bf16', '--quiet').code).toBe(0);
    const bf = readSafetensors(readBytes(join(outBf16, 'model.safetensors')));
    expect(bf.info(`${ref.fused_module.name}.weight`).dtype).toBe('BF16');
    expect(maxRelError(toFloat32(bf.tensor(`${ref.fused_module.name}.weight`)), want)).toBeLessThan(2 ** -8);
    expect(JSON.parse(readFileSync(join(outBf16, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
  });

  it('refuses bad input with exit 2, a message naming the problem, and no output left behind', () => {
    const out = join(work, 'never');
    const ia3 = join(work, 'ia3');
    cpSync(join(ADAPTERS, 'tiny-qv-r4'), ia3, { recursive: true });
    chmodSync(join(ia3, 'adapter_config.json'), 0o644);
    writeFileSync(join(ia3, 'adapter_config.json'), JSON.stringify({ peft_type: 'IA3', target_modules: ['q_proj'] }));
    const cases: [string[], RegExp][] = [
      [['--model', join(work, 'nope'), '--adapter', join(ADAPTERS, 'tiny-qv-r4')], /model .*nope does not exist/],
      [['--model', STORIES, '--adapter', join(ADAPTERS, 'tiny-dora-r4:0.5')], /PEFT defines no weighted DoRA merge/],
      [['--model', STORIES, '--adapter', ia3], /peft_type "IA3" is not supported/],
      [['--model', STORIES], /at least one --adapter/],
      [['--model', STORIES, '--adapter', join(ADAPTERS, 'tiny-qv-r4'), '--dtype', 'f8'], /--dtype f8/],
      [['--model', STORIES, '--adapter', join(ADAPTERS, 'tiny-qv-r4'), '--bogus'], /Unknown option '--bogus'/],
    ];
    for (const [args, message] of cases) {
      const r = cli('fuse', ...args, '--out', out, '--quiet');
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(existsSync(out)).toBe(false);
    }
  });

  it('fuses a sharded bf16 model into a sharded bf16 model, tokenizer files copied', () => {
    // The input: stories260k converted to bf16, split into shards.
    const src = readSafetensors(readBytes(join(STORIES, 'model.safetensors')));
    const sharded = join(work, 'sharded');
    mkdirSync(sharded);
    const specs = src.names().map((n) => {
      const t = src.tensor(n);
      return { name: n, ...fromFloat32(toFloat32(t), 'BF16', t.shape) };
    });
    const plan = planShards(specs, 200_000);
    expect(plan.files.length).toBeGreaterThan(1);
    for (const f of plan.files) {
      writeFileSync(
        join(sharded, f.name),
        serializeSafetensors(
          f.specs.map((s) => specs.find((t) => t.name === s.name)!),
          { metadata: { format: 'pt' } },
        ),
      );
    }
    writeFileSync(join(sharded, 'model.safetensors.index.json'), JSON.stringify(plan.index));
    writeFileSync(join(sharded, 'config.json'), readFileSync(join(STORIES, 'config.json')));
    writeFileSync(join(sharded, 'tokenizer.json'), '{"version":"1.0"}');

    const out = join(work, 'sharded-out');
    const r = cli('fuse', '--model', sharded, '--adapter', join(ADAPTERS, 'tiny-dora-r4'), '--out', out, '--quiet');
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(out, 'tokenizer.json'), 'utf8')).toBe('{"version":"1.0"}');
    const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8'));
    expect(index.weight_map).toEqual(plan.index.weight_map);
    const ref = readJson<MergedRef>(join(ADAPTERS, 'tiny-dora-r4', 'reference.json'));
    for (const [module, m] of Object.entries(ref.merged_modules)) {
      const file = index.weight_map[`${module}.weight`];
      const t = readSafetensors(readBytes(join(out, file))).tensor(`${module}.weight`);
      expect(t.dtype).toBe('BF16');
      // bf16 base weights: within bf16 rounding of PEFT's f32 result.
      expect(maxRelError(toFloat32(t), flatten(m.merged_weight))).toBeLessThan(2 ** -7);
    }
    const rep = JSON.parse(cli('inspect', out, '--json').stdout);
    expect(rep.summary.files).toEqual(plan.files.map((f) => f.name));
    expect(rep.problems).toEqual([]);
  });

  it('refuses an adapter made for another base, naming the module', () => {
    const other = join(work, 'wide-model');
    cpSync(STORIES, other, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(other, 'config.json'), 'utf8'));
    chmodSync(join(other, 'config.json'), 0o644);
    writeFileSync(join(other, 'config.json'), JSON.stringify({ ...cfg, intermediate_size: 100 }));
    const r = cli('inspect', join(ADAPTERS, 'tiny-all-r8'), '--model', other);
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/mlp\.(down|gate|up)_proj.*base module is/);
  });

  it('refuses a truncated model file naming it', () => {
    const broken = join(work, 'truncated');
    cpSync(STORIES, broken, { recursive: true });
    const bytes = readBytes(join(STORIES, 'model.safetensors'));
    chmodSync(join(broken, 'model.safetensors'), 0o644);
    writeFileSync(join(broken, 'model.safetensors'), bytes.subarray(0, 100_000));
    const r = cli('fuse', '--model', broken, '--adapter', join(ADAPTERS, 'tiny-qv-r4'), '--out', join(work, 'x'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/truncated\/model.safetensors.*safetensors_bad_offsets/);
  });
});

describe('lora-edge inspect', () => {
  it('summarises stories260k: shapes from the config and the parameter count', () => {
    const r = cli('inspect', STORIES, '--json');
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout);
    // 512·64 embeddings + 5 layers × (2·64 norms + q 64·64 + k,v 32·64 + o 64·64 + 3·172·64) + 64
    expect(rep.parameters).toBe(512 * 64 + 5 * (128 + 4096 + 2 * 2048 + 4096 + 3 * 172 * 64) + 64);
    expect(rep.summary).toMatchObject({ model_type: 'llama', layers: 5, kv_heads: 4, head_dim: 8, tied_embeddings: true });
    expect(rep.tensors).toHaveLength(47);
    expect(rep.problems).toEqual([]);
  });

  it.each(ALL_ADAPTERS)('summarises %s', (name) => {
    const r = cli('inspect', join(ADAPTERS, name), '--json');
    expect(r.code, r.stderr).toBe(0);
    const rep = JSON.parse(r.stdout);
    const cfg = readJson<{ peft_type: string; r: number }>(join(ADAPTERS, name, 'adapter_config.json'));
    const header = readSafetensors(readBytes(join(ADAPTERS, name, 'adapter_model.safetensors')));
    expect(rep.kind).toBe('adapter');
    expect(rep.summary.peft_type).toBe(cfg.peft_type);
    expect(rep.tensors.map((t: { name: string }) => t.name)).toEqual(header.names());
    const ref = readJson<{ modules: Record<string, { r?: number; kept_rank?: number }> }>(join(ADAPTERS, name, 'reference.json'));
    expect(rep.summary.modules).toBe(Object.keys(ref.modules).length);
    if (cfg.peft_type !== 'VERA') {
      const ranks = Object.values(ref.modules).map((m) => m.r ?? m.kept_rank);
      expect(rep.summary.ranks).toEqual([...new Set(ranks)].sort((a, b) => (a as number) - (b as number)));
    }
    expect(rep.problems).toEqual([]);
    expect(rep.notes.some((n: string) => n.includes('LoRI-style'))).toBe(name === 'tiny-lori-r8');
  });

  it('lists a .safetensors file from its header alone', () => {
    const r = cli('inspect', join(FIXTURES, 'nf4', 'normal_128x64__dq.safetensors'));
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/weight\.nested_absmax\s+F32\s+\[\d+\]/);
    expect(r.stdout).toMatch(/NF4-quantized tensors/);
  });

  it('names a missing path and prints --help for every command', () => {
    const r = cli('inspect', join(work, 'missing'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/missing: no such file or directory/);
    for (const c of ['inspect', 'fuse']) expect(cli(c, '--help').stdout).toMatch(/^Usage: lora-edge/);
    expect(cli('--help').code).toBe(0);
    expect(cli('frobnicate').code).toBe(2);
  });
});

describe('lora-edge generate', () => {
  interface Gen {
    generations: { prompt_ids: number[]; greedy_ids_merged: number[] }[];
  }
  it.each(ALL_ADAPTERS)('%s: merged and unmerged greedy ids equal the reference', (name) => {
    const g = readJson<Gen>(join(ADAPTERS, name, 'reference.json')).generations[0]!;
    for (const mode of ['--merged', '--unmerged']) {
      const r = cli(
        'generate',
        '--model',
        STORIES,
        '--adapter',
        join(ADAPTERS, name),
        '--prompt-ids',
        g.prompt_ids.join(','),
        '--max-tokens',
        String(g.greedy_ids_merged.length),
        '--ignore-eos',
        mode,
        '--json',
      );
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').at(-1) as string);
      expect(out.ids, mode).toEqual(g.greedy_ids_merged);
    }
  });

  it('stories260k and the weighted mix, on the native backend', () => {
    const ref = readJson<{ cases: { prompt_ids: number[]; greedy_ids: number[] }[] }>(join(STORIES, 'reference.json')).cases[1]!;
    const r = cli('generate', '--model', STORIES, '--prompt-ids', ref.prompt_ids.join(','), '--max-tokens', '48', '--ignore-eos', '--json');
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1) as string);
    expect(out).toMatchObject({ ids: ref.greedy_ids, backend: 'cpu-native', finish_reason: 'length' });
    const mix = readJson<{ adapters: string[]; weights: number[]; prompt_ids: number[]; greedy_ids_unmerged: number[] }>(
      join(ADAPTERS, 'mixes', 'reference.json'),
    );
    const args = mix.adapters.flatMap((a, i) => ['--adapter', `${join(ADAPTERS, a)}:${mix.weights[i]}`]);
    const m = cli(
      'generate',
      '--model',
      STORIES,
      ...args,
      '--prompt-ids',
      mix.prompt_ids.join(','),
      '--max-tokens',
      String(mix.greedy_ids_unmerged.length),
      '--ignore-eos',
      '--json',
    );
    expect(JSON.parse(m.stdout.trim().split('\n').at(-1) as string).ids).toEqual(mix.greedy_ids_unmerged);
  });

  it('refuses bad input with exit 2', () => {
    const cases: [string[], RegExp][] = [
      [['--prompt-ids', '1,99999'], /outside the vocabulary/],
      [['--prompt-ids', '1', '--max-tokens', '0'], /max tokens must be a positive integer/],
      [['--prompt', 'hello'], /needs a tokenizer.json/],
      [['--prompt-ids', '1', '--merged', '--unmerged'], /exclude each other/],
    ];
    for (const [args, msg] of cases) {
      const r = cli('generate', '--model', STORIES, ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
  });
});
