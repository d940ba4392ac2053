/**
 * NF4 dequantization, bit-exact with bitsandbytes' `dequantize_4bit`: code[nibble]·absmax in
 * float32 (with double quantization, absmax = dynamic[code8]·nested_absmax + offset, float32),
 * then rounded to the original dtype when asked for it.
 */
import { LoraEdgeError } from '../errors.ts';
import type { DType } from '../tensor/dtype.ts';
import { fromFloat32, type Tensor } from '../tensor/tensor.ts';
import { dequantizeBlockwise8 } from './blockwise8.ts';
import { checkNf4, type Nf4Quantized } from './types.ts';

/** The absmax of every block as dequantization uses it (the 8-bit codes decoded for double quant). */
export function nf4BlockAbsmax(q: Nf4Quantized): Float32Array {
  if (!q.doubleQuant) return q.absmax;
  return dequantizeBlockwise8(q.absmaxCodes, q.nestedAbsmax, q.nestedQuantMap, q.nestedBlocksize, Math.fround(q.offset));
}

/** The dequantized values as float32 (no rounding to a 16-bit dtype). */
export function dequantizeNf4(q: Nf4Quantized, out?: Float32Array): Float32Array {
  const n = checkNf4(q);
  if (out && out.length !== n) throw new LoraEdgeError('invalid_argument', `output holds ${out.length} values, the tensor has ${n}`);
  const dst = out ?? new Float32Array(n);
  const absmax = nf4BlockAbsmax(q);
  // A byte's two codes as two floats: one 512-entry table instead of shifts, masks and two lookups.
  const pair = new Float32Array(512);
  for (let v = 0; v < 256; v++) {
    pair[2 * v] = q.quantMap[v >> 4] as number;
    pair[2 * v + 1] = q.quantMap[v & 15] as number;
  }
  const { packed, blocksize } = q;
  const half = blocksize >> 1;
  const pairs = n >> 1;
  for (let b = 0; b < absmax.length; b++) {
    const am = absmax[b] as number;
    const first = b * half;
    const last = Math.min(first + half, pairs);
    for (let i = first; i < last; i++) {
      const v = (packed[i] as number) << 1;
      // A Float32Array store rounds the exact double product: a float32 multiply.
      dst[2 * i] = (pair[v] as number) * am;
      dst[2 * i + 1] = (pair[v + 1] as number) * am;
    }
  }
  if (n & 1) dst[n - 1] = (pair[(packed[pairs] as number) << 1] as number) * (absmax[absmax.length - 1] as number);
  return dst;
}

/** The dequantized tensor in `dtype` (default: the dtype it was quantized from), rounded to nearest even. */
export function dequantizeNf4Tensor(q: Nf4Quantized, dtype: DType = q.dtype): Tensor {
  return fromFloat32(dequantizeNf4(q), dtype, [...q.shape]);
}
