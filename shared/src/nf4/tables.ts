/**
 * The code tables bitsandbytes quantizes against: the 16-value NF4 code and the 256-value signed
 * dynamic map used for the double-quantized absmax. Both must match bitsandbytes bit for bit,
 * since a file stores codes (indices) and the reader looks the values up in its own table.
 */

/** bitsandbytes' NF4 code (`get_4bit_type('nf4')`), sorted; 0.0 sits at index 7. */
export const NF4_CODE: Float32Array = Float32Array.of(
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

/** The code of 0.0: the value an odd element count is padded with. */
export const NF4_PAD_CODE = 7;

/**
 * Bucketize boundaries of a sorted code: the float32 midpoints (code[i] + code[i+1]) / 2, as
 * PyTorch computes them (a float32 add, then an exact halving).
 */
export function midpoints(code: Float32Array): Float32Array {
  const out = new Float32Array(code.length - 1);
  for (let i = 0; i < out.length; i++) out[i] = Math.fround((code[i] as number) + (code[i + 1] as number)) / 2;
  return out;
}

const { fround } = Math;

/**
 * `torch.linspace(start, end, steps, dtype=float32)` as PyTorch 1.13 computes it on an x86 CPU
 * with AVX2: step = (end - start) / (steps - 1) in float32; elements come in 8-lane vectors, two
 * per loop turn, each vector's first lane is a fused multiply-add from the nearer end
 * (start + step*i below steps/2, end - step*(steps-1-i) above) and its other lanes add k*step in
 * float32; elements left over after the last pair of vectors use the scalar fused formula.
 * The rounding differs from the exact linspace in the last bit for some elements, and the
 * dynamic map inherits it, so this is what reproduces bitsandbytes' table exactly.
 */
export function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 1) {
    out[0] = start;
    return out;
  }
  const a = fround(start);
  const b = fround(end);
  const step = fround(fround(b - a) / (steps - 1));
  const half = steps >> 1;
  // a + step*i and b - step*j are exact in double for these magnitudes, so one fround is the FMA.
  const scalar = (i: number): number => (i < half ? fround(a + step * i) : fround(b - step * (steps - i - 1)));
  const lanes = 8;
  let i = 0;
  for (; i + 2 * lanes <= steps; i += 2 * lanes) {
    for (const v of [i, i + lanes]) {
      const base = scalar(v);
      for (let k = 0; k < lanes; k++) out[v + k] = fround(base + fround(k * step));
    }
  }
  for (; i < steps; i++) out[i] = scalar(i);
  return out;
}

/**
 * bitsandbytes' `create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)`: for each
 * exponent i in 0..6, the midpoints of linspace(0.1, 1, 2^i + 1) scaled by 10^(i-6), with both
 * signs; then 0 and 1; sorted. 127 * 2 + 2 = 256 values.
 */
export function createDynamicMapSigned(): Float32Array {
  const maxExponentBits = 7;
  const values: number[] = [];
  // Decimal literals, not 10 ** k: JS exponentiation is not guaranteed correctly rounded.
  const scales = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1];
  for (let i = 0; i < maxExponentBits; i++) {
    const bounds = torchLinspaceF32(0.1, 1, 2 ** i + 1);
    const scale = fround(scales[i] as number);
    for (let j = 0; j + 1 < bounds.length; j++) {
      const mean = fround((bounds[j] as number) + (bounds[j + 1] as number)) / 2;
      const v = fround(scale * mean);
      values.push(v, -v);
    }
  }
  values.push(0, 1);
  return Float32Array.from(values).sort();
}

let dynamicMap: Float32Array | undefined;

/** The signed dynamic map, built once. Callers must not mutate it. */
export function dynamicMapSigned(): Float32Array {
  dynamicMap ??= createDynamicMapSigned();
  return dynamicMap;
}

/** torch clamps absmax to 1e-38 (as float32) before scaling, so an all-zero block maps to code(0). */
export const ABSMAX_FLOOR = Math.fround(1e-38);

/** The blocksize bitsandbytes uses for the second quantization of absmax. */
export const NESTED_BLOCKSIZE = 256;
