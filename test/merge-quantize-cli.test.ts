/** Issue 3 through the real CLI process: every PEFT merge case, every bitsandbytes NF4 case. */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromFloat32, linalg, readSafetensors, serializeSafetensors, type Tensor, toFloat32 } from '@lora-edge/shared';
import { afterAll, describe, expect, it } from 'vitest';
import { ADAPTERS, FIXTURES, flatten, maxRelError, readBytes, readJson, STORIES } from './fixtures.ts';

const BIN = join(import.meta.dirname, '..', 'cli', 'bin', 'lora-edge.mjs');
const work = mkdtempSync(join(tmpdir(), 'lora-edge-mq-'));
afterAll(() => spawnSync('rm', ['-rf', work]));

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args, '--quiet'], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const MERGES = join(FIXTURES, 'merges', 'three-r4');
interface MergeCase {
  name: string;
  combination_type: string;
  majority_sign_method: string | null;
  weights: number[];
  density: number | null;
  svd_rank: number | null;
  new_rank: number;
  file: string;
  dare_masks: unknown[] | null;
}
const manifest = readJson<{ adapters: { name: string; r: number; lora_alpha: number }[]; cases: MergeCase[] }>(
  join(MERGES, 'manifest.json'),
);
const MODULE = 'model.layers.0.mlp.up_proj';

/** The three fixture adapters as PEFT adapter folders (one module each). */
const adapterDirs = manifest.adapters.map((a) => {
  const inputs = readSafetensors(readBytes(join(MERGES, 'inputs.safetensors')));
  const dir = join(work, a.name);
  mkdirSync(dir);
  writeFileSync(
    join(dir, 'adapter_config.json'),
    JSON.stringify({
      peft_type: 'LORA',
      r: a.r,
      lora_alpha: a.lora_alpha,
      target_modules: ['up_proj'],
      base_model_name_or_path: 'three-r4',
    }),
  );
  const t = (n: string) => inputs.tensor(`${a.name}.${n}`);
  writeFileSync(
    join(dir, 'adapter_model.safetensors'),
    serializeSafetensors([
      { name: `base_model.model.${MODULE}.lora_A.weight`, ...t('lora_A') },
      { name: `base_model.model.${MODULE}.lora_B.weight`, ...t('lora_B') },
    ]),
  );
  return dir;
});

function product(B: Float32Array, A: Float32Array, out: number, r: number, inF: number): Float64Array {
  return linalg.matmul({ rows: out, cols: r, data: Float64Array.from(B) }, { rows: r, cols: inF, data: Float64Array.from(A) }).data;
}

describe('lora-edge merge reproduces PEFT on adapter folders', () => {
  it.each(manifest.cases.map((c) => [c.name, c] as const))('%s', (_, c) => {
    const out = join(work, `merged-${c.name}`);
    const args = [
      'merge',
      ...adapterDirs.flatMap((d, i) => ['--adapter', `${d}:${c.weights[i]}`]),
      '--method',
      c.combination_type,
      '--out',
      out,
    ];
    if (c.density !== null) args.push('--density', String(c.density));
    if (c.svd_rank !== null) args.push('--svd-rank', String(c.svd_rank));
    if (c.majority_sign_method) args.push('--majority-sign', c.majority_sign_method);
    if (c.dare_masks) args.push('--replay-masks', join(MERGES, c.file));
    const r = cli(...args);
    expect(r.code, r.stderr).toBe(0);
    const cfg = readJson<{ r: number; lora_alpha: number; peft_type: string; target_modules: string[] }>(join(out, 'adapter_config.json'));
    expect(cfg).toMatchObject({ r: c.new_rank, lora_alpha: c.new_rank, peft_type: 'LORA', target_modules: ['up_proj'] });
    const got = readSafetensors(readBytes(join(out, 'adapter_model.safetensors')));
    const ref = readSafetensors(readBytes(join(MERGES, c.file)));
    const A = toFloat32(got.tensor(`base_model.model.${MODULE}.lora_A.weight`));
    const B = toFloat32(got.tensor(`base_model.model.${MODULE}.lora_B.weight`));
    if (c.combination_type.endsWith('svd')) {
      expect(maxRelError(product(B, A, 96, c.new_rank, 64), toFloat32(ref.tensor('delta')))).toBeLessThan(1e-4);
    } else {
      expect(maxRelError(A, toFloat32(ref.tensor('lora_A')))).toBeLessThan(1e-5);
      expect(maxRelError(B, toFloat32(ref.tensor('lora_B')))).toBeLessThan(1e-5);
    }
    expect(JSON.parse(got.header.metadata?.lora_edge ?? '{}')).toMatchObject({
      op: 'merge',
      method: c.combination_type,
      semantics: 'peft',
    });
  });

  it('--exact linear is the weighted sum of deltas', () => {
    const out = join(work, 'exact-linear');
    const w = [0.6, 0.3, -0.2];
    expect(
      cli('merge', ...adapterDirs.flatMap((d, i) => ['--adapter', `${d}:${w[i]}`]), '--method', 'linear', '--exact', '--out', out).code,
    ).toBe(0);
    const got = readSafetensors(readBytes(join(out, 'adapter_model.safetensors')));
    const A = toFloat32(got.tensor(`base_model.model.${MODULE}.lora_A.weight`));
    const B = toFloat32(got.tensor(`base_model.model.${MODULE}.lora_B.weight`));
    const rank = A.length / 64;
    const inputs = readSafetensors(readBytes(join(MERGES, 'inputs.safetensors')));
    const want = new Float64Array(96 * 64);
    manifest.adapters.forEach((a, i) => {
      const d = toFloat32(inputs.tensor(`${a.name}.delta_weight`));
      for (let j = 0; j < want.length; j++) want[j] = (want[j] as number) + (w[i] as number) * (d[j] as number);
    });
    expect(maxRelError(product(B, A, 96, rank, 64), want)).toBeLessThan(1e-5);
  });

  it('refuses bad input naming the problem, writing nothing', () => {
    const out = join(work, 'never');
    const cases: [string[], RegExp][] = [
      [['--method', 'ties', '--density', '1.5'], /density/],
      [['--method', 'svd', '--svd-rank', '0'], /svd/i],
      [['--method', 'frobnicate'], /--method frobnicate/],
    ];
    for (const [extra, msg] of cases) {
      const r = cli('merge', ...adapterDirs.flatMap((d) => ['--adapter', d]), ...extra, '--out', out);
      expect(r.code, extra.join(' ')).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(existsSync(out)).toBe(false);
    }
    const unequal = cli(
      'merge',
      '--adapter',
      join(ADAPTERS, 'tiny-qv-r4'),
      '--adapter',
      join(ADAPTERS, 'tiny-all-r8'),
      '--method',
      'linear',
      '--out',
      out,
    );
    expect(unequal.code).toBe(2);
    expect(unequal.stderr).toMatch(/tiny-qv-r4.*4.*tiny-all-r8.*8|rank/);
    const vera = cli(
      'merge',
      '--adapter',
      join(ADAPTERS, 'tiny-vera-r16'),
      '--adapter',
      join(ADAPTERS, 'tiny-qv-r4'),
      '--method',
      'ties',
      '--density',
      '0.5',
      '--out',
      out,
    );
    expect(vera.stderr).toMatch(/is VERA/);
    expect(
      cli(
        'merge',
        '--adapter',
        join(ADAPTERS, 'tiny-vera-r16'),
        '--adapter',
        join(ADAPTERS, 'tiny-qv-r4'),
        '--method',
        'cat',
        '--out',
        join(work, 'vera-cat'),
      ).code,
    ).toBe(0);
  });
});

const NF4 = join(FIXTURES, 'nf4');
const nf4Cases = readJson<{
  cases: { name: string; input: string; input_dtype: string; compress_statistics: boolean; blocksize: number }[];
}>(join(NF4, 'manifest.json')).cases;

describe('lora-edge quantize / dequantize reproduce bitsandbytes', () => {
  it.each(nf4Cases.map((c) => [c.name, c] as const))('%s', (_, c) => {
    const ref = readSafetensors(readBytes(join(NF4, `${c.name}.safetensors`)));
    const bf16 = c.input_dtype === 'bfloat16';
    const input: Tensor = bf16 ? ref.tensor('ref.input_bf16') : ref.tensor('ref.input');
    const src = join(work, `${c.name}.in.safetensors`);
    writeFileSync(src, serializeSafetensors([{ name: 'weight', ...input }]));
    const out = join(work, `${c.name}.nf4.safetensors`);
    const args = ['quantize', src, '--tensors', 'weight', '--blocksize', String(c.blocksize), '--out', out];
    if (c.compress_statistics) args.push('--double-quant');
    const r = cli(...args);
    expect(r.code, r.stderr).toBe(0);
    const got = readSafetensors(readBytes(out));
    for (const name of ref.names().filter((n) => n.startsWith('weight'))) {
      expect(got.info(name).dtype, name).toBe(ref.info(name).dtype);
      expect(Buffer.from(got.tensor(name).data).equals(Buffer.from(ref.tensor(name).data)), name).toBe(true);
    }
    // And back: the fixture's own bitsandbytes tensors dequantize to its reference values.
    const back = join(work, `${c.name}.back.safetensors`);
    expect(cli('dequantize', join(NF4, `${c.name}.safetensors`), '--out', back).code).toBe(0);
    const deq = readSafetensors(readBytes(back)).tensor('weight');
    const want = bf16 ? ref.tensor('ref.dequantized_bf16') : ref.tensor('ref.dequantized');
    expect(deq.dtype).toBe(want.dtype);
    expect(Buffer.from(deq.data).equals(Buffer.from(want.data))).toBe(true);
  });

  it('quantizes a model folder for transformers: linear weights NF4, config carries quantization_config', () => {
    const out = join(work, 'stories-nf4');
    expect(cli('quantize', STORIES, '--double-quant', '--out', out).code).toBe(0);
    const cfg = readJson<{ quantization_config: Record<string, unknown> }>(join(out, 'config.json'));
    expect(cfg.quantization_config).toMatchObject({
      quant_method: 'bitsandbytes',
      load_in_4bit: true,
      bnb_4bit_quant_type: 'nf4',
      bnb_4bit_use_double_quant: true,
    });
    const st = readSafetensors(readBytes(join(out, 'model.safetensors')));
    expect(st.info('model.layers.0.self_attn.q_proj.weight').dtype).toBe('U8');
    expect(st.has('model.layers.0.self_attn.q_proj.weight.nested_absmax')).toBe(true);
    expect(st.info('model.embed_tokens.weight').dtype).toBe('F32');
    expect(st.info('model.norm.weight').dtype).toBe('F32');
  });

  it('fuse --nf4 fuses in full precision then quantizes once', () => {
    const fusedNf4 = join(work, 'dora-nf4');
    expect(cli('fuse', '--model', STORIES, '--adapter', join(ADAPTERS, 'tiny-dora-r4'), '--nf4', '--out', fusedNf4).code).toBe(0);
    const fused = join(work, 'dora-f32');
    expect(cli('fuse', '--model', STORIES, '--adapter', join(ADAPTERS, 'tiny-dora-r4'), '--out', fused).code).toBe(0);
    const requant = join(work, 'dora-f32-nf4');
    expect(cli('quantize', fused, '--out', requant).code).toBe(0);
    const a = readSafetensors(readBytes(join(fusedNf4, 'model.safetensors')));
    const b = readSafetensors(readBytes(join(requant, 'model.safetensors')));
    expect(a.names()).toEqual(b.names());
    for (const n of a.names()) expect(Buffer.from(a.tensor(n).data).equals(Buffer.from(b.tensor(n).data)), n).toBe(true);
    // The NF4 weights decode close to PEFT's merged weights: within half NF4's widest code gap, (1 - 0.723) / 2 of a block's absmax.
    const back = join(work, 'dora-nf4-back');
    expect(cli('dequantize', fusedNf4, '--out', back).code).toBe(0);
    const ref = readJson<{ merged_modules: Record<string, { merged_weight: number[][] }> }>(
      join(ADAPTERS, 'tiny-dora-r4', 'reference.json'),
    );
    const deq = readSafetensors(readBytes(join(back, 'model.safetensors')));
    for (const [module, m] of Object.entries(ref.merged_modules)) {
      expect(maxRelError(toFloat32(deq.tensor(`${module}.weight`)), flatten(m.merged_weight))).toBeLessThan(0.14);
    }
    expect(readFileSync(join(fusedNf4, 'config.json'), 'utf8')).toContain('"quant_method": "bitsandbytes"');
  });

  it('refuses a blocksize that is not a power of two, and NaN input naming the tensor', () => {
    const src = join(work, 'nan.safetensors');
    const v = Float32Array.from({ length: 128 }, (_, i) => i);
    v[77] = Number.NaN;
    writeFileSync(src, serializeSafetensors([{ name: 'w', ...fromFloat32(v, 'F32', [2, 64]) }]));
    const bad = cli('quantize', src, '--blocksize', '100', '--out', join(work, 'x.safetensors'));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/100 is not a power of two/);
    const nan = cli('quantize', src, '--out', join(work, 'y.safetensors'));
    expect(nan.code).toBe(2);
    expect(nan.stderr).toMatch(/"w"|\bw\b.*NaN|NaN/);
    expect(existsSync(join(work, 'y.safetensors'))).toBe(false);
  });
});
