/**
 * bitsandbytes' blockwise 8-bit quantization (`quantize_blockwise` / `dequantize_blockwise`),
 * which double quantization applies to the NF4 absmax values. It sees a few hundred thousand
 * values at most, so it favours plainness over speed.
 */
import { bucketizePadded, padBounds } from './bucketize.ts';
import { ABSMAX_FLOOR, midpoints } from './tables.ts';

export interface Blockwise8 {
  codes: Uint8Array;
  absmax: Float32Array;
}

/**
 * Full blocks scale by x·(1/absmax) and store the raw absmax; the tail block scales by
 * x/absmax and stores the clamped absmax, as bitsandbytes' kernel does. Values are clamped to
 * [-1, 1], then bucketized against the float32 midpoints of `code` (sorted).
 */
export function quantizeBlockwise8(values: Float32Array, code: Float32Array, blocksize: number): Blockwise8 {
  const n = values.length;
  const bounds = padBounds(midpoints(code));
  const blocks = Math.ceil(n / blocksize);
  const codes = new Uint8Array(n);
  const absmax = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    const start = b * blocksize;
    const end = Math.min(start + blocksize, n);
    let am = 0;
    for (let i = start; i < end; i++) am = Math.max(am, Math.abs(values[i] as number));
    const clamped = Math.max(am, ABSMAX_FLOOR);
    const tail = end - start < blocksize;
    absmax[b] = tail ? clamped : am;
    const inv = Math.fround(1 / clamped);
    for (let i = start; i < end; i++) {
      const x = values[i] as number;
      const s = tail ? Math.fround(x / clamped) : Math.fround(x * inv);
      codes[i] = bucketizePadded(bounds, Math.min(1, Math.max(-1, s)));
    }
  }
  return { codes, absmax };
}

/** code[c]·absmax[block] in float32, plus `offset` (float32) when given. */
export function dequantizeBlockwise8(
  codes: Uint8Array,
  absmax: Float32Array,
  code: Float32Array,
  blocksize: number,
  offset = 0,
): Float32Array {
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) {
    const v = Math.fround((code[codes[i] as number] as number) * (absmax[Math.floor(i / blocksize)] as number));
    out[i] = v + offset;
  }
  return out;
}
