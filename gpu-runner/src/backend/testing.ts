/**
 * Test support for the backend suites: seeded random data, float64 references computed here
 * independently of both backends (own bf16 / f16 / NF4 decoding), and a tolerance check scaled
 * by the magnitude each output was summed from (f32 sums are accurate relative to Σ|terms|, not
 * to their possibly cancelling total).
 */
import { expect } from 'vitest';
import type { WeightDType, WeightInit } from './types.ts';

/** bitsandbytes' NF4 code, as published in the QLoRA paper's reference implementation. */
export const NF4_TABLE = Float32Array.of(
  -1.0,
  -0.6961928009986877,
  -0.5250730514526367,
  -0.39491748809814453,
  -0.28444138169288635,
  -0.18477343022823334,
  -0.09105003625154495,
  0.0,
  0.07958029955625534,
  0.16093020141124725,
  0.24611230194568634,
  0.33791524171829224,
  0.44070982933044434,
  0.5626170039176941,
  0.7229568362236023,
  1.0,
);

export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 1;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let s = this.s;
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    this.s = s >>> 0;
    return this.s / 2 ** 32;
  }
  /** Uniform in [-a, a). */
  sym(a = 1): number {
    return (this.next() * 2 - 1) * a;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  f32(n: number, a = 1): Float32Array {
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = this.sym(a);
    return x;
  }
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** Round-to-nearest-even f32 → bf16 bits, written independently of shared/. */
export function toBf16(v: number): number {
  f32buf[0] = v;
  const x = u32buf[0] as number;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16Value(h: number): number {
  u32buf[0] = h << 16;
  return f32buf[0] as number;
}

/** f16 bits → value by the IEEE formula. */
export function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 31) return m ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return e === 0 ? sign * m * 2 ** -24 : sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** A random weight of the given dtype and its exact values as float64 (row-major [out, in]). */
export function randomWeight(
  rng: Rng,
  dtype: WeightDType,
  out: number,
  inF: number,
  blocksize = 64,
): { init: WeightInit; values: Float64Array } {
  const count = out * inF;
  const values = new Float64Array(count);
  switch (dtype) {
    case 'f32': {
      const data = rng.f32(count);
      values.set(data);
      return { init: { dtype, out, in: inF, data }, values };
    }
    case 'bf16': {
      const data = new Uint16Array(count);
      for (let i = 0; i < count; i++) {
        data[i] = toBf16(rng.sym());
        values[i] = bf16Value(data[i] as number);
      }
      return { init: { dtype, out, in: inF, data }, values };
    }
    case 'f16': {
      const data = new Uint16Array(count);
      for (let i = 0; i < count; i++) {
        // Random finite halves of moderate size: sign, exponent 5..17, any mantissa.
        data[i] = (rng.int(2) << 15) | ((5 + rng.int(13)) << 10) | rng.int(1024);
        values[i] = f16Value(data[i] as number);
      }
      return { init: { dtype, out, in: inF, data }, values };
    }
    case 'nf4': {
      const data = new Uint8Array(Math.ceil(count / 2));
      for (let i = 0; i < data.length; i++) data[i] = rng.int(256);
      const absmax = rng.f32(Math.ceil(count / blocksize)).map((v) => 0.5 + Math.abs(v));
      for (let f = 0; f < count; f++) {
        const byte = data[Math.floor(f / 2)] as number;
        const code = f % 2 === 0 ? byte >> 4 : byte & 15;
        values[f] = Math.fround((NF4_TABLE[code] as number) * (absmax[Math.floor(f / blocksize)] as number));
      }
      return { init: { dtype, out, in: inF, data, nf4: { blocksize, absmax, quantMap: NF4_TABLE } }, values };
    }
  }
}

/** y = x Wᵀ in float64, with Σ|w·x| per output as the error scale. */
export function refMatmul(x: Float32Array, n: number, W: Float64Array, out: number, inF: number): { y: Float64Array; mag: Float64Array } {
  const y = new Float64Array(n * out);
  const mag = new Float64Array(n * out);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < out; j++) {
      let s = 0;
      let m = 0;
      for (let k = 0; k < inF; k++) {
        const p = (W[j * inF + k] as number) * (x[i * inF + k] as number);
        s += p;
        m += Math.abs(p);
      }
      y[i * out + j] = s;
      mag[i * out + j] = m;
    }
  }
  return { y, mag };
}

/** Asserts |got − ref| ≤ tol · mag (+ a tiny absolute floor) everywhere; NaN fails. */
export function expectClose(
  got: ArrayLike<number>,
  ref: ArrayLike<number>,
  mag: ArrayLike<number> | number,
  tol: number,
  label: string,
): void {
  expect(got.length, `${label}: length`).toBe(ref.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < ref.length; i++) {
    const m = typeof mag === 'number' ? mag : (mag[i] as number);
    const err = Math.abs((got[i] as number) - (ref[i] as number));
    const ratio = err / (m + 1e-30);
    if (!(ratio <= worst)) {
      worst = ratio;
      at = i;
    }
    if (Number.isNaN(ratio)) break;
  }
  if (!(worst <= tol)) {
    expect.fail(`${label}: error ${worst.toExponential(2)} × scale at [${at}] (got ${got[at]}, want ${ref[at]}) exceeds ${tol}`);
  }
}

/** A Float32Array view at a non-zero byte offset with sentinels after it, to catch stray writes. */
export function offsetArray(n: number, fill = Number.NaN): { view: Float32Array; guard: () => void } {
  const buf = new Float32Array(n + 8);
  buf.fill(fill);
  buf.fill(12345, n + 3);
  const view = buf.subarray(3, n + 3);
  return {
    view,
    guard: () => {
      for (let i = n + 3; i < n + 8; i++) expect(buf[i], 'sentinel after the output').toBe(12345);
      for (let i = 0; i < 3; i++) expect(Number.isNaN(buf[i]) || buf[i] === fill, 'sentinel before the output').toBe(true);
    },
  };
}
