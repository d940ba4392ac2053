import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JsBackend } from './js.ts';
import { createNativeBackend } from './native.ts';
import { bf16Value, f16Value } from './testing.ts';
import type { Backend } from './types.ts';

const native = createNativeBackend();
const js = new JsBackend();
const ISAS = (['avx512', 'avx2', 'portable'] as const).filter((isa) => {
  try {
    native.setIsa(isa);
    return true;
  } catch {
    return false;
  }
});
native.setIsa('auto');

const same = (a: number, b: number) => a === b || (Number.isNaN(a) && Number.isNaN(b));

/**
 * Every finite 16-bit pattern as a [4096 × 16] weight; y = W eᵢ reads column i back, so each
 * output is exactly one decoded weight (times 1, plus zeros): the conversion must be exact,
 * subnormals included. Both the GEMV path (one row of x) and the GEMM path (16 rows) are read.
 */
function checkAllPatterns(be: Backend, dtype: 'bf16' | 'f16'): void {
  const decode = dtype === 'bf16' ? bf16Value : f16Value;
  const data = new Uint16Array(65536);
  const want = new Float64Array(65536);
  for (let h = 0; h < 65536; h++) {
    const v = decode(h);
    data[h] = Number.isFinite(v) ? h : 0;
    want[h] = Number.isFinite(v) ? v : 0;
  }
  const w = be.createWeight({ dtype, out: 4096, in: 16, data });
  const eye = new Float32Array(256);
  for (let i = 0; i < 16; i++) eye[i * 17] = 1;
  const y = new Float32Array(16 * 4096);
  be.matmul(y, eye, 16, w);
  const y1 = new Float32Array(4096);
  let bad = 0;
  for (let c = 0; c < 16; c++) {
    be.matmul(y1, eye.subarray(c * 16, c * 16 + 16), 1, w);
    for (let r = 0; r < 4096; r++) {
      const h = r * 16 + c;
      if (!same(y1[r] as number, want[h] as number) || !same(y[c * 4096 + r] as number, want[h] as number)) bad++;
    }
  }
  expect(bad, `${be.name} ${dtype}: inexact conversions`).toBe(0);
  be.release?.(w);
}

/** inf and NaN patterns pass through unchanged (x = [1, 0, …], specials only in column 0). */
function checkSpecials(be: Backend, dtype: 'bf16' | 'f16'): void {
  const decode = dtype === 'bf16' ? bf16Value : f16Value;
  const specials: number[] = [];
  for (let h = 0; h < 65536; h++) if (!Number.isFinite(decode(h))) specials.push(h);
  for (const inF of [1, 16, 19]) {
    const data = new Uint16Array(specials.length * inF);
    specials.forEach((h, r) => {
      data[r * inF] = h;
    });
    const w = be.createWeight({ dtype, out: specials.length, in: inF, data });
    const x = new Float32Array(inF);
    x[0] = 1;
    const y = new Float32Array(specials.length);
    be.matmul(y, x, 1, w);
    specials.forEach((h, r) => {
      expect(same(y[r] as number, decode(h)), `${dtype} pattern 0x${h.toString(16)}`).toBe(true);
    });
  }
}

describe.each(ISAS)('bf16 / f16 conversion with the %s kernels', (isa) => {
  beforeAll(() => native.setIsa(isa));
  afterAll(() => native.setIsa('auto'));
  it.each(['bf16', 'f16'] as const)('%s: all 65536 patterns decode exactly', (dtype) => {
    checkAllPatterns(native, dtype);
    checkSpecials(native, dtype);
  });
});

describe('the js backend decodes the same', () => {
  it.each(['bf16', 'f16'] as const)('%s', (dtype) => {
    checkAllPatterns(js, dtype);
    checkSpecials(js, dtype);
  });
});

describe('bf16 LoRA factors round to nearest even', () => {
  it('matches round-to-nearest-even of the f32 factors', () => {
    // A picks out one factor value: y = B (A x) with x = 1, B = 1 reads A's stored value.
    const vals = Float32Array.of(1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -9, -3.3, 65504.7, 1e-40, 3.4e38);
    for (const be of [native, js]) {
      for (const v of vals) {
        const h = be.createLora({ rank: 1, out: 1, in: 1, A: Float32Array.of(v), B: Float32Array.of(1), dtype: 'bf16' });
        const y = new Float32Array(1);
        be.lora(y, Float32Array.of(1), 1, Int32Array.of(0), [h]);
        const bits = new Uint32Array(Float32Array.of(v).buffer)[0] as number;
        const rne = ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
        expect(y[0], `${be.name} ${v}`).toBe(bf16Value(rne));
      }
    }
  });
});
