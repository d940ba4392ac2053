/**
 * The domain library runs inside workerd unchanged: read the golden safetensors, load a PEFT
 * adapter, fuse it, and compare with PEFT's merged weights.
 */
import {
  deltaTerm,
  fuseModule,
  loadLoraAdapter,
  parseModelConfig,
  readSafetensors,
  serializeSafetensors,
  toFloat32,
} from '@lora-edge/shared';
import { describe, expect, it } from 'vitest';
import doraConfig from '../../../fixtures/adapters/tiny-dora-r4/adapter_config.json';
import doraWeights from '../../../fixtures/adapters/tiny-dora-r4/adapter_model.safetensors';
import doraRef from '../../../fixtures/adapters/tiny-dora-r4/reference.json';
import storiesConfig from '../../../fixtures/models/stories260k/config.json';
import storiesWeights from '../../../fixtures/models/stories260k/model.safetensors';

function maxRelError(a: Float32Array, b: number[]): number {
  let d = 0;
  let s = 0;
  b.forEach((v, i) => {
    d = Math.max(d, Math.abs((a[i] as number) - v));
    s = Math.max(s, Math.abs(v));
  });
  return d / s;
}

describe('shared inside workerd', () => {
  it('reads and rewrites stories260k byte for byte', () => {
    const bytes = new Uint8Array(storiesWeights as ArrayBuffer);
    const f = readSafetensors(bytes);
    expect(f.names()).toHaveLength(47);
    const again = serializeSafetensors(
      f.names().map((n) => ({ name: n, ...f.tensor(n) })),
      { metadata: f.header.metadata },
    );
    expect(again.byteLength).toBe(bytes.byteLength);
    expect(again.findIndex((b, i) => b !== bytes[i])).toBe(-1);
  });

  it('fuses tiny-dora-r4 like PEFT', () => {
    const config = parseModelConfig(JSON.stringify(storiesConfig));
    expect(config.headDim).toBe(8);
    const model = readSafetensors(new Uint8Array(storiesWeights as ArrayBuffer));
    const adapter = loadLoraAdapter({ configText: JSON.stringify(doraConfig), weights: new Uint8Array(doraWeights as ArrayBuffer) });
    const ref = doraRef as unknown as { merged_modules: Record<string, { shape: [number, number]; merged_weight: number[][] }> };
    for (const [module, m] of Object.entries(ref.merged_modules)) {
      const W = toFloat32(model.tensor(`${module}.weight`));
      const fused = fuseModule(W, m.shape[0], m.shape[1], [deltaTerm(adapter.modules.get(module)!, 1)]);
      expect(maxRelError(fused, m.merged_weight.flat())).toBeLessThanOrEqual(1e-6);
    }
  });
});
