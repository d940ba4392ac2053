import { join } from 'node:path';
import { fuseModule, mixTerms, toFloat32 } from '@lora-edge/shared';
import { describe, expect, it } from 'vitest';
import { ADAPTERS, flatten, LORA_ADAPTERS, maxRelError, readJson, STORIES } from '../../../test/fixtures.ts';
import { loadNativeAddon } from '../backend/native.ts';
import { loadAdapterDir, modelSource, openModelDir } from '../io/files.ts';
import { fuseModuleNative } from './fuse.ts';

const model = modelSource(openModelDir(STORIES));
const weight = (module: string) => toFloat32(model.get(`${module}.weight`) as Parameters<typeof toFloat32>[0]);

/** Norm-wise relative error ‖a − b‖ / ‖b‖. */
function relError(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += ((a[i] as number) - (b[i] as number)) ** 2;
    den += (b[i] as number) ** 2;
  }
  return Math.sqrt(num / den);
}

describe.runIf(loadNativeAddon().addon)('native fuse', () => {
  it('fuses every fixture adapter to PEFT’s merged weights, as the TypeScript fuse does', () => {
    for (const name of LORA_ADAPTERS) {
      const adapter = loadAdapterDir(join(ADAPTERS, name));
      const ref = readJson<{ merged_modules: Record<string, { merged_weight: number[][] }> }>(join(ADAPTERS, name, 'reference.json'));
      const terms = mixTerms([{ name, adapter, weight: 1 }]);
      for (const [module, m] of Object.entries(ref.merged_modules)) {
        const t = terms.get(module);
        if (!t) throw new Error(`${name}: no terms for ${module}`);
        const W = weight(module);
        const [out, inF] = [m.merged_weight.length, (m.merged_weight[0] as number[]).length];
        const fused = fuseModuleNative(W, out, inF, t);
        expect(maxRelError(fused, flatten(m.merged_weight)), `${name} ${module}`).toBeLessThan(1e-6);
        expect(relError(fused, fuseModule(W, out, inF, t))).toBeLessThan(1e-6);
      }
    }
  });

  it('sums a weighted mix of several terms; leaves the input weight untouched', () => {
    const mix = ['tiny-qv-r4', 'tiny-all-r8', 'tiny-rslora-r8'].map((name, i) => ({
      name,
      adapter: loadAdapterDir(join(ADAPTERS, name)),
      weight: [0.5, -0.3, 0.8][i] as number,
    }));
    const module = 'model.layers.0.self_attn.q_proj';
    const t = mixTerms(mix).get(module) ?? [];
    expect(t.length).toBe(3);
    const W = weight(module);
    const before = W.slice();
    const side = Math.sqrt(W.length);
    expect(relError(fuseModuleNative(W, side, side, t), fuseModule(W, side, side, t))).toBeLessThan(1e-6);
    expect(W).toEqual(before);
  });

  it('leaves DoRA to the TypeScript fuse (its row norm needs the fused row), bit for bit', () => {
    const adapter = loadAdapterDir(join(ADAPTERS, 'tiny-dora-r4'));
    for (const [module, t] of mixTerms([{ name: 'dora', adapter, weight: 1 }])) {
      const W = weight(module);
      const shape = (model.get(`${module}.weight`) as { shape: number[] }).shape as [number, number];
      expect(fuseModuleNative(W, shape[0], shape[1], t)).toEqual(fuseModule(W, shape[0], shape[1], t));
    }
  });

  it('refuses shapes that do not match, as fuseModule does', () => {
    const module = 'model.layers.0.self_attn.q_proj';
    const t = mixTerms([{ name: 'qv', adapter: loadAdapterDir(join(ADAPTERS, 'tiny-qv-r4')), weight: 1 }]).get(module) ?? [];
    expect(() => fuseModuleNative(new Float32Array(10), 5, 2, t)).toThrow();
  });
});
