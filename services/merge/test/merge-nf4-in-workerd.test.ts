/**
 * Issue 3's engines inside workerd: every PEFT merge case and every bitsandbytes NF4 case,
 * computed by `shared` in the Workers runtime against the golden files.
 */
import {
  linalg,
  type MergeMethod,
  type MergeOptions,
  mergeAdapters,
  quantizeNf4,
  readSafetensors,
  replayRandomSource,
  type SafetensorsFile,
  toBnbTensors,
  toFloat32,
} from '@lora-edge/shared';
import { describe, expect, it } from 'vitest';
import mergeManifest from '../../../fixtures/merges/three-r4/manifest.json';
import nf4Manifest from '../../../fixtures/nf4/manifest.json';

// Data modules: wrangler's rule imports every .safetensors as an ArrayBuffer.
const mergeFiles = import.meta.glob<ArrayBuffer>('../../../fixtures/merges/three-r4/**/*.safetensors', { eager: true, import: 'default' });
const nf4Files = import.meta.glob<ArrayBuffer>('../../../fixtures/nf4/*.safetensors', { eager: true, import: 'default' });

function open(files: Record<string, ArrayBuffer>, suffix: string): SafetensorsFile {
  const key = Object.keys(files).find((k) => k.endsWith(suffix));
  if (!key) throw new Error(`fixture ${suffix} not bundled`);
  return readSafetensors(new Uint8Array(files[key] as ArrayBuffer));
}

function maxRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let s = 0;
  for (let i = 0; i < b.length; i++) {
    d = Math.max(d, Math.abs((a[i] as number) - (b[i] as number)));
    s = Math.max(s, Math.abs(b[i] as number));
  }
  return d / s;
}

describe('PEFT merges inside workerd', () => {
  const inputs = open(mergeFiles, 'three-r4/inputs.safetensors');
  for (const c of mergeManifest.cases) {
    it(c.name, () => {
      const file = open(mergeFiles, c.file);
      const adapters = mergeManifest.adapters.map((a, i) => ({
        name: a.name,
        lora_A: toFloat32(inputs.tensor(a.lora_A)),
        lora_B: toFloat32(inputs.tensor(a.lora_B)),
        r: a.r,
        scaling: a.scaling,
        weight: c.weights[i] as number,
      }));
      const opts: MergeOptions = { method: c.combination_type as MergeMethod };
      if (c.density !== null) opts.density = c.density;
      if (c.svd_rank !== null) opts.svdRank = c.svd_rank;
      if (c.majority_sign_method) opts.majoritySignMethod = c.majority_sign_method as 'total' | 'frequency';
      if (c.dare_masks) opts.random = replayRandomSource(c.dare_masks.map((m) => file.tensor(m.tensor).data));
      const r = mergeAdapters(adapters, opts);
      expect(r.rank).toBe(c.new_rank);
      if (c.combination_type.endsWith('svd')) {
        const BA = linalg.matmul(
          { rows: 96, cols: r.rank, data: Float64Array.from(r.lora_B) },
          { rows: r.rank, cols: 64, data: Float64Array.from(r.lora_A) },
        );
        expect(maxRel(BA.data, toFloat32(file.tensor('delta')))).toBeLessThan(1e-4);
      } else {
        expect(maxRel(r.lora_A, toFloat32(file.tensor('lora_A')))).toBeLessThan(1e-5);
        expect(maxRel(r.lora_B, toFloat32(file.tensor('lora_B')))).toBeLessThan(1e-5);
      }
    });
  }
});

describe('NF4 inside workerd', () => {
  for (const c of nf4Manifest.cases) {
    it(c.name, () => {
      const file = open(nf4Files, `${c.name}.safetensors`);
      const input = c.input_dtype === 'bfloat16' ? file.tensor('ref.input_bf16') : file.tensor('ref.input');
      const q = quantizeNf4(input, { blocksize: c.blocksize, doubleQuant: c.compress_statistics });
      for (const t of toBnbTensors('weight', q)) {
        const want = file.tensor(t.name).data;
        expect(t.data.byteLength, t.name).toBe(want.byteLength);
        expect(
          t.data.findIndex((b, i) => b !== want[i]),
          t.name,
        ).toBe(-1);
      }
    });
  }
});
