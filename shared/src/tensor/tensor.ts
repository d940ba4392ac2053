import { LoraEdgeError } from '../errors.ts';
import { type DType, dtypeSize, numel } from './dtype.ts';
import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16 } from './half.ts';

/** A tensor as stored: dtype, shape and its little-endian bytes. */
export interface Tensor {
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

export function tensorByteLength(dtype: DType, shape: readonly number[]): number {
  return numel(shape) * dtypeSize(dtype);
}

/** A typed view when the bytes are aligned for it, else an aligned copy. */
function view<T>(data: Uint8Array, width: number, make: (buf: ArrayBufferLike, off: number, len: number) => T): T {
  const len = data.byteLength / width;
  if (data.byteOffset % width === 0) return make(data.buffer, data.byteOffset, len);
  const copy = data.slice();
  return make(copy.buffer, 0, len);
}

export function asFloat32Array(data: Uint8Array): Float32Array {
  return view(data, 4, (b, o, l) => new Float32Array(b, o, l));
}

export function asUint16Array(data: Uint8Array): Uint16Array {
  return view(data, 2, (b, o, l) => new Uint16Array(b, o, l));
}

export function bytesOf(array: ArrayBufferView): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

/**
 * The values as float32. F32 data comes back as a view when aligned (no copy): callers that
 * mutate must pass `copy: true`.
 */
export function toFloat32(t: Tensor, opts: { copy?: boolean } = {}): Float32Array {
  const n = numel(t.shape);
  switch (t.dtype) {
    case 'F32': {
      const v = asFloat32Array(t.data);
      return opts.copy && v.buffer === t.data.buffer ? v.slice() : v;
    }
    case 'F16':
      return f16ArrayToF32(asUint16Array(t.data));
    case 'BF16':
      return bf16ArrayToF32(asUint16Array(t.data));
    case 'F64': {
      const src = view(t.data, 8, (b, o, l) => new Float64Array(b, o, l));
      return Float32Array.from(src);
    }
    default: {
      const out = new Float32Array(n);
      const dv = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      const w = dtypeSize(t.dtype);
      for (let i = 0; i < n; i++) out[i] = readInt(dv, t.dtype, i * w);
      return out;
    }
  }
}

function readInt(dv: DataView, dtype: DType, off: number): number {
  switch (dtype) {
    case 'I64':
      return Number(dv.getBigInt64(off, true));
    case 'I32':
      return dv.getInt32(off, true);
    case 'I16':
      return dv.getInt16(off, true);
    case 'I8':
      return dv.getInt8(off);
    default:
      return dv.getUint8(off);
  }
}

/** float32 values into a float tensor of `dtype` (F32, F16, BF16 or F64), rounding to nearest even. */
export function fromFloat32(values: Float32Array, dtype: DType, shape: number[]): Tensor {
  if (numel(shape) !== values.length) {
    throw new LoraEdgeError('invalid_argument', `shape [${shape}] does not hold ${values.length} values`);
  }
  switch (dtype) {
    case 'F32':
      return { dtype, shape, data: bytesOf(values) };
    case 'F16':
      return { dtype, shape, data: bytesOf(f32ArrayToF16(values)) };
    case 'BF16':
      return { dtype, shape, data: bytesOf(f32ArrayToBf16(values)) };
    case 'F64':
      return { dtype, shape, data: bytesOf(Float64Array.from(values)) };
    default:
      throw new LoraEdgeError('invalid_argument', `cannot store floating values as ${dtype}`);
  }
}

/** Index of the first NaN or ±Inf, or -1. */
export function firstNonFinite(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    if (v - v !== 0) return i;
  }
  return -1;
}
