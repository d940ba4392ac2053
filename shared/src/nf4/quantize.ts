/**
 * NF4 quantization, bit-exact with bitsandbytes' `quantize_4bit(quant_type="nf4")`:
 * absmax per block of `blocksize` elements; full blocks scale by x·(1/absmax), a shorter tail
 * block by x/absmax (absmax clamped to 1e-38 for the scaling, and stored clamped for the
 * tail); bucketize against the 15 float32 midpoints (a value on a midpoint takes the lower
 * code); two codes per byte, the first in the high nibble; an odd count padded with code 7.
 * Double quantization stores absmax - mean(absmax) as 8-bit codes (blocks of 256, signed
 * dynamic map) plus one float32 scale per 256 absmax values.
 */
import { LoraEdgeError } from '../errors.ts';
import { numel } from '../tensor/dtype.ts';
import { firstNonFinite, type Tensor, toFloat32 } from '../tensor/tensor.ts';
import { quantizeBlockwise8 } from './blockwise8.ts';
import { bucketizePadded, getNf4Bucketizer, type Nf4Bucketizer, padBounds } from './bucketize.ts';
import { ABSMAX_FLOOR, dynamicMapSigned, midpoints, NESTED_BLOCKSIZE, NF4_CODE, NF4_PAD_CODE } from './tables.ts';
import { torchMeanF32 } from './torch-mean.ts';
import { checkBlocksize, type Nf4Quantized, type Nf4SourceDType } from './types.ts';

export interface Nf4QuantizeOptions {
  /** Elements per absmax block; a power of two, 32..4096. Default 64. */
  blocksize?: number;
  /** Quantize the absmax values again to 8 bits (bitsandbytes' compress_statistics). Default false. */
  doubleQuant?: boolean;
  /** Shape recorded for a Float32Array input (default [length]); a Tensor brings its own. */
  shape?: number[];
  /** Tensor name for error messages. */
  name?: string;
}

export function quantizeNf4(input: Float32Array | Tensor, opts: Nf4QuantizeOptions = {}): Nf4Quantized {
  const place = opts.name !== undefined ? { tensor: opts.name } : {};
  const blocksize = checkBlocksize(opts.blocksize ?? 64);
  const { values, shape, dtype } = source(input, opts.shape, place);
  const n = values.length;
  if (n === 0) throw new LoraEdgeError('invalid_argument', 'cannot quantize an empty tensor', place);

  const packed = new Uint8Array(Math.ceil(n / 2));
  const absmax = new Float32Array(Math.ceil(n / blocksize));
  const full = Math.floor(n / blocksize);
  const bad = quantizeFullBlocks(values, blocksize, full, packed, absmax);
  if (bad >= 0) throw nonFinite(values, bad * blocksize, place);
  if (full * blocksize < n) {
    const at = quantizeTail(values, full * blocksize, packed, absmax);
    if (at >= 0) throw nonFinite(values, at, place);
  }

  const common = { shape, dtype, blocksize, packed, quantMap: NF4_CODE.slice() };
  if (!opts.doubleQuant) return { ...common, doubleQuant: false, absmax };
  const offset = torchMeanF32(absmax);
  const centered = new Float32Array(absmax.length);
  for (let i = 0; i < absmax.length; i++) centered[i] = (absmax[i] as number) - offset;
  const nestedQuantMap = dynamicMapSigned().slice();
  const { codes, absmax: nestedAbsmax } = quantizeBlockwise8(centered, nestedQuantMap, NESTED_BLOCKSIZE);
  return { ...common, doubleQuant: true, absmaxCodes: codes, nestedAbsmax, nestedQuantMap, nestedBlocksize: NESTED_BLOCKSIZE, offset };
}

function source(
  input: Float32Array | Tensor,
  shapeOpt: number[] | undefined,
  place: { tensor?: string },
): { values: Float32Array; shape: number[]; dtype: Nf4SourceDType } {
  if (input instanceof Float32Array) {
    const shape = shapeOpt ?? [input.length];
    if (numel(shape) !== input.length) {
      throw new LoraEdgeError('invalid_argument', `shape [${shape}] does not hold ${input.length} values`, { ...place, field: 'shape' });
    }
    return { values: input, shape: [...shape], dtype: 'F32' };
  }
  if (input.dtype !== 'F32' && input.dtype !== 'F16' && input.dtype !== 'BF16') {
    throw new LoraEdgeError('invalid_argument', `NF4 quantizes F32, F16 or BF16 tensors, not ${input.dtype}`, place);
  }
  const values = toFloat32(input);
  if (numel(input.shape) !== values.length) {
    throw new LoraEdgeError('invalid_argument', `shape [${input.shape}] does not hold ${values.length} values`, {
      ...place,
      field: 'shape',
    });
  }
  return { values, shape: [...input.shape], dtype: input.dtype };
}

function nonFinite(values: Float32Array, from: number, place: { tensor?: string }): LoraEdgeError {
  const i = from + firstNonFinite(values.subarray(from));
  return new LoraEdgeError('non_finite_value', `element ${i} is ${values[i]}; NF4 needs finite values`, place);
}

/**
 * The hot loop over whole blocks. Returns the index of the first block holding NaN or ±Inf, or -1.
 * absmax is taken on the float32 bit patterns: |x| is bits & 0x7fffffff, integer order equals
 * float order for non-negative floats, and any NaN or Inf shows up as bits >= 0x7f800000.
 */
function quantizeFullBlocks(x: Float32Array, blocksize: number, blocks: number, packed: Uint8Array, absmax: Float32Array): number {
  const bits = new Int32Array(x.buffer, x.byteOffset, x.length);
  const table = getNf4Bucketizer();
  for (let b = 0; b < blocks; b++) {
    const start = b * blocksize;
    const m = maxAbsBits(bits, start, start + blocksize);
    if (m >= 0x7f800000) return b;
    const am = bitsToFloat(m);
    absmax[b] = am;
    encodeBlock(x, start, start + blocksize, am, table, packed);
  }
  return -1;
}

const f32Scratch = new Float32Array(1);
const i32Scratch = new Int32Array(f32Scratch.buffer);

function bitsToFloat(m: number): number {
  i32Scratch[0] = m;
  return f32Scratch[0] as number;
}

/** max |x| over [start, end) as float32 bits. */
function maxAbsBits(bits: Int32Array, start: number, end: number): number {
  let m = 0;
  for (let i = start; i < end; i++) {
    const v = (bits[i] as number) & 0x7fffffff;
    m = Math.max(v, m);
  }
  return m;
}

/**
 * Codes of one full block, two per byte. Everything the loop reads is a local or an argument:
 * an imported binding can compile to a getter call per element (tsx / CommonJS interop).
 */
function encodeBlock(x: Float32Array, start: number, end: number, am: number, table: Nf4Bucketizer, packed: Uint8Array): void {
  const { cells, thresholds, scale, floor } = table;
  const inv = Math.fround(1 / Math.max(am, floor));
  const invScale = inv * scale;
  for (let i = start; i < end; i += 2) {
    const x0 = x[i] as number;
    const x1 = x[i + 1] as number;
    let q0 = cells[(x0 * invScale + scale) | 0] as number;
    let q1 = cells[(x1 * invScale + scale) | 0] as number;
    // Rare (a midpoint in the cell); +(bool) keeps the compare itself branch-free.
    if (q0 > 15) q0 = (q0 & 15) + +(x0 * inv > (thresholds[q0 & 15] as number));
    if (q1 > 15) q1 = (q1 & 15) + +(x1 * inv > (thresholds[q1 & 15] as number));
    packed[i >> 1] = (q0 << 4) | q1;
  }
}

let nf4Bounds: Float32Array | undefined;

/** The tail block (shorter than blocksize): x/absmax, rounded to float32, then bucketized. Returns a non-finite index or -1. */
function quantizeTail(x: Float32Array, start: number, packed: Uint8Array, absmax: Float32Array): number {
  nf4Bounds ??= padBounds(midpoints(NF4_CODE));
  const n = x.length;
  let am = 0;
  for (let i = start; i < n; i++) {
    const v = x[i] as number;
    if (v - v !== 0) return i;
    am = Math.max(am, Math.abs(v));
  }
  const clamped = Math.max(am, ABSMAX_FLOOR);
  absmax[absmax.length - 1] = clamped;
  for (let i = start; i < n; i += 2) {
    const q0 = bucketizePadded(nf4Bounds, Math.fround((x[i] as number) / clamped));
    const q1 = i + 1 < n ? bucketizePadded(nf4Bounds, Math.fround((x[i + 1] as number) / clamped)) : NF4_PAD_CODE;
    packed[i >> 1] = (q0 << 4) | q1;
  }
  return -1;
}
