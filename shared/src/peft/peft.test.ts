import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ADAPTERS, LORA_ADAPTERS, readBytes, readJson, STORIES } from '../../../test/fixtures.ts';
import { LoraEdgeError } from '../errors.ts';
import { parseModelConfig } from '../model/config.ts';
import { readSafetensors } from '../safetensors/read.ts';
import { type NamedTensor, serializeSafetensors } from '../safetensors/write.ts';
import { fitAdapterToModel, loadLoraAdapter } from './adapter.ts';
import { loraModuleHyper, matchPatternKey, parseAdapterConfig } from './config.ts';
import { isTargeted } from './targets.ts';

const configOf = (name: string) => readFileSync(join(ADAPTERS, name, 'adapter_config.json'), 'utf8');
const weightsOf = (name: string) => readBytes(join(ADAPTERS, name, 'adapter_model.safetensors'));
const stories = parseModelConfig(readFileSync(join(STORIES, 'config.json'), 'utf8'));

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof LoraEdgeError) return e.code;
    throw e;
  }
  return 'ok';
}

describe('fixture adapters', () => {
  it.each(LORA_ADAPTERS)('%s: per-module r, alpha and scaling equal the reference', (name) => {
    const a = loadLoraAdapter({ configText: configOf(name), weights: weightsOf(name) });
    const ref = readJson<{ modules: Record<string, { r: number; lora_alpha: number; scaling: number }> }>(
      join(ADAPTERS, name, 'reference.json'),
    );
    expect([...a.modules.keys()].sort()).toEqual(Object.keys(ref.modules).sort());
    for (const [module, want] of Object.entries(ref.modules)) {
      const m = a.modules.get(module)!;
      expect({ r: m.r, alpha: m.alpha }).toEqual({ r: want.r, alpha: want.lora_alpha });
      expect(m.scaling).toBeCloseTo(want.scaling, 12);
    }
  });

  it('VeRA: shared projections sliced per module, no alpha/r scaling', () => {
    const a = loadLoraAdapter({ configText: configOf('tiny-vera-r16'), weights: weightsOf('tiny-vera-r16') });
    expect(a.peftType).toBe('VERA');
    expect(a.modules.size).toBe(10);
    const v = a.modules.get('model.layers.0.self_attn.v_proj')!;
    expect({ r: v.r, scaling: v.scaling, out: v.outFeatures, in: v.inFeatures }).toEqual({ r: 16, scaling: 1, out: 32, in: 64 });
  });

  it('AdaLoRA: kept ranks from rank_pattern, scaling / (init_r + 1e-5) as PEFT computes it in float32', () => {
    const a = loadLoraAdapter({ configText: configOf('tiny-adalora-r8'), weights: weightsOf('tiny-adalora-r8') });
    const ref = readJson<{ effective_scale_f32: number; modules: Record<string, { kept_rank: number }> }>(
      join(ADAPTERS, 'tiny-adalora-r8', 'reference.json'),
    );
    for (const [module, m] of Object.entries(ref.modules)) {
      expect(a.modules.get(module)!.r).toBe(m.kept_rank);
      expect(a.modules.get(module)!.scaling).toBe(ref.effective_scale_f32);
    }
  });
});

describe('PEFT key matching', () => {
  const cfg = (o: Record<string, unknown>) => parseAdapterConfig(JSON.stringify({ peft_type: 'LORA', r: 8, lora_alpha: 16, ...o }));

  it('target_modules as a list matches names and dotted suffixes', () => {
    const c = cfg({ target_modules: ['q_proj', 'mlp.down_proj'] });
    expect(isTargeted(c, 'model.layers.0.self_attn.q_proj')).toBe(true);
    expect(isTargeted(c, 'model.layers.0.mlp.down_proj')).toBe(true);
    expect(isTargeted(c, 'model.layers.0.self_attn.qq_proj')).toBe(false);
  });
  it('target_modules as a string is a full-match regex', () => {
    const c = cfg({ target_modules: '.*\\.(q|v)_proj' });
    expect(isTargeted(c, 'model.layers.3.self_attn.v_proj')).toBe(true);
    expect(isTargeted(c, 'model.layers.3.self_attn.v_proj_x')).toBe(false);
    expect(isTargeted(c, 'model.layers.3.self_attn.k_proj')).toBe(false);
  });
  it('layers_to_transform and layers_pattern select layers', () => {
    const c = cfg({ target_modules: ['q_proj'], layers_to_transform: [1, 3], layers_pattern: 'layers' });
    expect(isTargeted(c, 'model.layers.1.self_attn.q_proj')).toBe(true);
    expect(isTargeted(c, 'model.layers.2.self_attn.q_proj')).toBe(false);
    expect(isTargeted(cfg({ target_modules: ['q_proj'], layers_to_transform: 2 }), 'model.layers.2.self_attn.q_proj')).toBe(true);
  });
  it('exclude_modules wins; all-linear selects the projections', () => {
    const c = cfg({ target_modules: 'all-linear', exclude_modules: ['o_proj'] });
    expect(isTargeted(c, 'model.layers.0.mlp.gate_proj')).toBe(true);
    expect(isTargeted(c, 'model.layers.0.self_attn.o_proj')).toBe(false);
    expect(isTargeted(c, 'lm_head')).toBe(false);
  });
  it('rank_pattern / alpha_pattern keys match as (.*\\.)?(key)$, first key wins', () => {
    const c = cfg({
      rank_pattern: { 'layers.3.self_attn.v_proj': 4, v_proj: 2 },
      alpha_pattern: { '^model.layers.1\\..*': 3 },
      use_rslora: true,
    });
    expect(matchPatternKey(c.rank_pattern, 'model.layers.3.self_attn.v_proj')).toBe('layers.3.self_attn.v_proj');
    expect(matchPatternKey(c.rank_pattern, 'model.layers.13.self_attn.v_proj')).toBe('v_proj');
    expect(matchPatternKey(c.rank_pattern, 'model.layers.3.self_attn.xv_proj')).toBeUndefined();
    expect(loraModuleHyper(c, 'model.layers.3.self_attn.v_proj')).toEqual({ r: 4, alpha: 16, scaling: 16 / 2 });
    expect(loraModuleHyper(c, 'model.layers.1.self_attn.q_proj').alpha).toBe(3);
  });
});

describe('bad adapters', () => {
  const good = JSON.parse(configOf('tiny-qv-r4')) as Record<string, unknown>;
  const st = readSafetensors(weightsOf('tiny-qv-r4'));
  const load = (cfg: Record<string, unknown>, tensors?: NamedTensor[]) =>
    loadLoraAdapter({ configText: JSON.stringify(cfg), weights: tensors ? serializeSafetensors(tensors) : weightsOf('tiny-qv-r4') });
  const tensors = () => st.names().map((n) => ({ name: n, ...st.tensor(n) }));

  it.each([
    ['rank 0', { ...good, r: 0 }, 'adapter_config_invalid'],
    ['missing lora_alpha', { ...good, lora_alpha: undefined }, 'adapter_config_invalid'],
    ['missing peft_type', { ...good, peft_type: undefined }, 'adapter_config_invalid'],
    ['modules_to_save', { ...good, modules_to_save: ['lm_head'] }, 'adapter_unsupported'],
    ['another peft_type', { ...good, peft_type: 'IA3' }, 'adapter_unsupported'],
    ['a LoRA file declared as VeRA', { ...good, peft_type: 'VERA' }, 'adapter_key_invalid'],
    ['a LoRA file declared as AdaLoRA', { ...good, peft_type: 'ADALORA', init_r: 4 }, 'adapter_key_invalid'],
    ['a LoRA file declared as VeRA', { ...good, peft_type: 'VERA' }, 'adapter_key_invalid'],
    ['a LoRA file declared as AdaLoRA', { ...good, peft_type: 'ADALORA', init_r: 4 }, 'adapter_key_invalid'],
    ['rank_pattern disagreeing with the tensors', { ...good, rank_pattern: { q_proj: 8 } }, 'adapter_shape_mismatch'],
    ['targets that miss the saved modules', { ...good, target_modules: ['k_proj'] }, 'adapter_key_invalid'],
    ['a bad pattern regex', { ...good, rank_pattern: { '(': 2 } }, 'adapter_config_invalid'],
  ])('%s', (_, cfg, code) => expect(codeOf(() => load(cfg))).toBe(code));

  it('unknown extra config fields are accepted', () => expect(codeOf(() => load({ ...good, some_future_field: { x: 1 } }))).toBe('ok'));

  it('embedding LoRA and a lone factor are refused by tensor name', () => {
    const emb = [
      ...tensors(),
      { name: 'base_model.model.model.embed_tokens.lora_embedding_A', dtype: 'F32' as const, shape: [1], data: new Uint8Array(4) },
    ];
    expect(() => load(good, emb)).toThrow(/lora_embedding_A.*embedding layers is not supported/);
    const lone = tensors().filter((t) => !t.name.endsWith('layers.0.self_attn.q_proj.lora_B.weight'));
    expect(() => load(good, lone)).toThrow(/layers.0.self_attn.q_proj.*has lora_A but no lora_B/);
  });

  it('NaN in a factor is refused naming the module', () => {
    const t = tensors();
    const a = t.find((x) => x.name.endsWith('layers.2.self_attn.v_proj.lora_A.weight'))!;
    a.data = a.data.slice();
    new DataView(a.data.buffer).setFloat32(4, Number.NaN, true);
    expect(() => load(good, t)).toThrow(/layers.2.self_attn.v_proj.*NaN/);
  });

  it('an adapter for another base (other hidden size) is refused naming the module', () => {
    const wide = parseModelConfig(
      JSON.stringify({ ...JSON.parse(readFileSync(join(STORIES, 'config.json'), 'utf8')), hidden_size: 128, head_dim: 16 }),
    );
    const a = loadLoraAdapter({ configText: configOf('tiny-qv-r4'), weights: weightsOf('tiny-qv-r4') });
    expect(() => fitAdapterToModel(a, wide)).toThrow(
      /adapter_model.safetensors, tensor "base_model.model.model.layers.0.self_attn.q_proj".*another base/,
    );
    expect(() => fitAdapterToModel(a, stories)).not.toThrow();
  });

  it('fuzz: mutated configs give an adapter or a typed error', () => {
    const keys = Object.keys(good);
    fc.assert(
      fc.property(
        fc.dictionary(fc.constantFrom(...keys, 'rank_pattern', 'alpha_pattern'), fc.oneof(fc.anything(), fc.integer(), fc.string())),
        (patch) => {
          codeOf(() => load({ ...good, ...patch }));
        },
      ),
      { numRuns: 1500 },
    );
  });
});
