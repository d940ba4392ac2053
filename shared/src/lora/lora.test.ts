import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ADAPTERS, ALL_ADAPTERS, flatten, maxRelError, readBytes, readJson, STORIES } from '../../../test/fixtures.ts';
import { parseModelConfig } from '../model/config.ts';
import { fitAdapterToModel, type LoraAdapter, loadLoraAdapter } from '../peft/adapter.ts';
import { readSafetensors } from '../safetensors/read.ts';
import { toFloat32 } from '../tensor/tensor.ts';
import { fuseModule } from './fuse.ts';
import { mixTerms } from './mix.ts';
import { deltaTerm } from './terms.ts';
import { linearForward, stackedForward, stackTerms, unmergedForward } from './unmerged.ts';

interface Reference {
  merged_modules: Record<string, { shape: [number, number]; merged_weight: number[][] }>;
}

const model = readSafetensors(readBytes(join(STORIES, 'model.safetensors')));
const config = parseModelConfig(readFileSync(join(STORIES, 'config.json'), 'utf8'));

function load(name: string): LoraAdapter {
  const dir = join(ADAPTERS, name);
  return loadLoraAdapter({
    configText: readFileSync(join(dir, 'adapter_config.json'), 'utf8'),
    weights: readBytes(join(dir, 'adapter_model.safetensors')),
  });
}

function baseWeight(module: string): Float32Array {
  return toFloat32(model.tensor(`${module}.weight`));
}

/** Deterministic inputs, independent of the code under test. */
function inputs(n: number, len: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n * len }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

describe.each(ALL_ADAPTERS)('%s', (name) => {
  const adapter = load(name);
  const ref = readJson<Reference>(join(ADAPTERS, name, 'reference.json'));

  it('fits stories260k', () => fitAdapterToModel(adapter, config));

  it.each(Object.keys(ref.merged_modules))('fusing %s reproduces PEFT within 1e-6', (module) => {
    const m = adapter.modules.get(module);
    expect(m).toBeDefined();
    const [out, inF] = ref.merged_modules[module]!.shape;
    const fused = fuseModule(baseWeight(module), out, inF, [deltaTerm(m!, 1)]);
    expect(maxRelError(fused, flatten(ref.merged_modules[module]?.merged_weight as number[][]))).toBeLessThanOrEqual(1e-6);
  });

  it('unmerged, stacked and fused products agree on every module', () => {
    for (const m of adapter.modules.values()) {
      const W = baseWeight(m.module);
      const terms = [deltaTerm(m, 1)];
      const x = inputs(3, m.inFeatures, 7);
      const merged = linearForward(x, 3, fuseModule(W, m.outFeatures, m.inFeatures, terms), m.outFeatures, m.inFeatures);
      const unmerged = unmergedForward(x, 3, W, m.outFeatures, m.inFeatures, terms);
      const stacked = stackedForward(x, 3, W, m.outFeatures, m.inFeatures, stackTerms(W, m.outFeatures, m.inFeatures, terms));
      expect(maxRelError(unmerged, merged)).toBeLessThan(1e-5);
      expect(maxRelError(stacked, merged)).toBeLessThan(1e-5);
    }
  });
});

describe('weighted three-adapter mix', () => {
  const ref = readJson<{
    adapters: string[];
    weights: number[];
    fused_module: { name: string; shape: [number, number]; fused_weight: number[][] };
  }>(join(ADAPTERS, 'mixes', 'reference.json'));
  const mix = ref.adapters.map((name, i) => ({ name, adapter: load(name), weight: ref.weights[i] as number }));
  const terms = mixTerms(mix);

  it('fuses to the reference weight', () => {
    const { name, shape, fused_weight } = ref.fused_module;
    const fused = fuseModule(baseWeight(name), shape[0], shape[1], terms.get(name)!);
    expect(maxRelError(fused, flatten(fused_weight))).toBeLessThanOrEqual(1e-6);
  });

  it('stacks into one shrink/expand pair equal to the fused weight', () => {
    const { name, shape } = ref.fused_module;
    const W = baseWeight(name);
    const t = terms.get(name)!;
    expect(t.length).toBe(3);
    const x = inputs(4, shape[1], 11);
    const stack = stackTerms(W, shape[0], shape[1], t);
    expect(stack.rank).toBe(4 + 8 + 8);
    const merged = linearForward(x, 4, fuseModule(W, shape[0], shape[1], t), shape[0], shape[1]);
    expect(maxRelError(stackedForward(x, 4, W, shape[0], shape[1], stack), merged)).toBeLessThan(1e-5);
  });

  it('a DoRA adapter in a mix: merged equals unmerged', () => {
    const dora = load('tiny-dora-r4');
    const qv = load('tiny-qv-r4');
    const t = mixTerms([
      { name: 'qv', adapter: qv, weight: 0.7 },
      { name: 'dora', adapter: dora, weight: 1 },
    ]);
    const module = 'model.layers.1.self_attn.q_proj';
    const W = baseWeight(module);
    const x = inputs(2, 64, 3);
    const merged = linearForward(x, 2, fuseModule(W, 64, 64, t.get(module)!), 64, 64);
    expect(maxRelError(unmergedForward(x, 2, W, 64, 64, t.get(module)!), merged)).toBeLessThan(1e-5);
    expect(maxRelError(stackedForward(x, 2, W, 64, 64, stackTerms(W, 64, 64, t.get(module)!)), merged)).toBeLessThan(1e-5);
  });

  it('refuses a weighted DoRA adapter and weights summing to zero', () => {
    expect(() => mixTerms([{ name: 'dora', adapter: load('tiny-dora-r4'), weight: 0.5 }])).toThrow(/PEFT defines no weighted DoRA merge/);
    expect(() =>
      mixTerms([
        { name: 'a', adapter: load('tiny-qv-r4'), weight: 0.5 },
        { name: 'b', adapter: load('tiny-all-r8'), weight: -0.5 },
      ]),
    ).toThrow(/sum to zero/);
  });
});
