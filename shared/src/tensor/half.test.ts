import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bf16ArrayToF32, f16ArrayToF32, f16BitsToF32, f32ArrayToBf16, f32ArrayToF16, f32ToBf16Bits, f32ToF16Bits } from './half.ts';
import { fromFloat32, toFloat32 } from './tensor.ts';

/** Independent reference: round x (a float32 value) to a binary format with `mant` stored bits, nearest even, in float64. */
function roundToFormat(x: number, mant: number, minExp: number, maxFinite: number): number {
  if (Number.isNaN(x) || x === 0 || !Number.isFinite(x)) return x;
  const e = Math.max(Math.floor(Math.log2(Math.abs(x))), minExp);
  const ulp = 2 ** (e - mant);
  const q = x / ulp;
  let r = Math.round(q);
  if (Math.abs(q - Math.trunc(q)) === 0.5) r = 2 * Math.round(q / 2); // ties to even
  const v = r * ulp;
  if (Math.abs(v) > maxFinite) return Math.sign(x) * Number.POSITIVE_INFINITY;
  return v === 0 ? (x < 0 ? -0 : 0) : v;
}
const f16Ref = (x: number) => roundToFormat(x, 10, -14, 65504);
const bf16Ref = (x: number) => roundToFormat(x, 7, -126, 3.3895313892515355e38);

describe('half precision', () => {
  it('every f16 bit pattern decodes and re-encodes to itself', () => {
    for (let h = 0; h < 65536; h++) {
      const v = f16BitsToF32(h);
      if (Number.isNaN(v)) continue;
      expect(f32ToF16Bits(v)).toBe(h);
    }
  });

  it('known values', () => {
    expect(f16BitsToF32(0x3c00)).toBe(1);
    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // rounds past the largest finite
    expect(f32ToF16Bits(2 ** -25)).toBe(0); // exactly half the smallest subnormal: ties to even (0)
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(2); // 1.5 subnormal ulps: ties to even (2)
    expect(f32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie, even stays
    expect(f32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie, odd rounds up
    expect(Number.isNaN(bf16ArrayToF32(f32ArrayToBf16(Float32Array.of(Number.NaN)))[0])).toBe(true);
    expect(Number.isNaN(f16ArrayToF32(f32ArrayToF16(Float32Array.of(Number.NaN)))[0])).toBe(true);
  });

  it('f32 -> f16 and f32 -> bf16 round to nearest even (against a float64 reference)', () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true }), (x) => {
        const f = Math.fround(x);
        expect(f16ArrayToF32(f32ArrayToF16(Float32Array.of(f)))[0]).toBe(f16Ref(f));
        expect(bf16ArrayToF32(f32ArrayToBf16(Float32Array.of(f)))[0]).toBe(bf16Ref(f));
      }),
      { numRuns: 20000 },
    );
  });

  it('tensors convert between float dtypes', () => {
    const v = Float32Array.of(1.5, -2.25, 1e-3, 70000);
    for (const dtype of ['F32', 'F16', 'BF16', 'F64'] as const) {
      const back = toFloat32(fromFloat32(v, dtype, [2, 2]));
      const ref = dtype === 'F16' ? [...v].map(f16Ref) : dtype === 'BF16' ? [...v].map(bf16Ref) : [...v];
      expect([...back]).toEqual(ref);
    }
  });
});
