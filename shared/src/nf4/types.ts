/** The NF4-quantized form of one tensor, and the checks every entry point shares. */
import { LoraEdgeError } from '../errors.ts';

/** The float dtypes bitsandbytes quantizes (and dequantizes back to). */
export type Nf4SourceDType = 'F32' | 'F16' | 'BF16';

export interface Nf4Common {
  /** The original tensor's shape and dtype. */
  shape: number[];
  dtype: Nf4SourceDType;
  /** Elements per absmax block: a power of two, 32..4096. */
  blocksize: number;
  /** ceil(n/2) bytes; the first element of each pair in the high nibble; an odd count ends with code 7. */
  packed: Uint8Array;
  /** The 16 values the nibbles index (NF4_CODE, or the copy a file carried). */
  quantMap: Float32Array;
}

export interface Nf4Plain extends Nf4Common {
  doubleQuant: false;
  /** One float32 absmax per block (a tail block has its own). */
  absmax: Float32Array;
}

/** Double quantization: absmax - offset stored as 8-bit codes, blockwise over 256 absmax values. */
export interface Nf4DoubleQuant extends Nf4Common {
  doubleQuant: true;
  /** One code per block into `nestedQuantMap`. */
  absmaxCodes: Uint8Array;
  /** One float32 scale per `nestedBlocksize` codes. */
  nestedAbsmax: Float32Array;
  /** The signed dynamic map (256 values). */
  nestedQuantMap: Float32Array;
  nestedBlocksize: number;
  /** float32 mean of the absmax values, added back after the 8-bit dequantization. */
  offset: number;
}

export type Nf4Quantized = Nf4Plain | Nf4DoubleQuant;

export const MIN_BLOCKSIZE = 32;
export const MAX_BLOCKSIZE = 4096;

export function isValidBlocksize(b: unknown): b is number {
  return typeof b === 'number' && Number.isInteger(b) && b >= MIN_BLOCKSIZE && b <= MAX_BLOCKSIZE && (b & (b - 1)) === 0;
}

export function checkBlocksize(b: unknown, field = 'blocksize'): number {
  if (!isValidBlocksize(b)) {
    throw new LoraEdgeError('invalid_argument', `${String(b)} is not a power of two between ${MIN_BLOCKSIZE} and ${MAX_BLOCKSIZE}`, {
      field,
    });
  }
  return b;
}

export function blockCount(n: number, blocksize: number): number {
  return Math.ceil(n / blocksize);
}

/** Element count of a shape whose entries are non-negative safe integers; undefined when it is not such a shape. */
export function shapeNumel(shape: unknown): number | undefined {
  if (!Array.isArray(shape)) return undefined;
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) return undefined;
    n *= d;
    if (!Number.isSafeInteger(n)) return undefined;
  }
  return n;
}

/** Throws `nf4_invalid` unless the arrays have the lengths the shape and blocksizes imply. */
export function checkNf4(q: Nf4Quantized): number {
  const bad = (msg: string, field?: string): LoraEdgeError => new LoraEdgeError('nf4_invalid', msg, field ? { field } : {});
  const n = shapeNumel(q.shape);
  if (n === undefined || n === 0) throw bad(`shape [${String(q.shape)}] is not a non-empty tensor shape`, 'shape');
  if (!isValidBlocksize(q.blocksize)) throw bad(`blocksize ${q.blocksize} is not a power of two between 32 and 4096`, 'blocksize');
  const blocks = blockCount(n, q.blocksize);
  if (q.packed.length !== Math.ceil(n / 2)) throw bad(`packed codes hold ${q.packed.length} bytes, ${n} elements need ${Math.ceil(n / 2)}`);
  if (q.quantMap.length !== 16) throw bad(`quant map has ${q.quantMap.length} values, NF4 needs 16`);
  if (!q.doubleQuant) {
    if (q.absmax.length !== blocks) throw bad(`absmax has ${q.absmax.length} values, ${blocks} blocks need one each`);
    return n;
  }
  if (!isValidBlocksize(q.nestedBlocksize)) throw bad(`nested blocksize ${q.nestedBlocksize} is not a power of two between 32 and 4096`);
  if (q.absmaxCodes.length !== blocks) throw bad(`absmax codes: ${q.absmaxCodes.length}, ${blocks} blocks need one each`);
  const nested = blockCount(blocks, q.nestedBlocksize);
  if (q.nestedAbsmax.length !== nested) throw bad(`nested absmax has ${q.nestedAbsmax.length} values, ${blocks} codes need ${nested}`);
  if (q.nestedQuantMap.length !== 256) throw bad(`nested quant map has ${q.nestedQuantMap.length} values, needs 256`);
  if (!Number.isFinite(q.offset)) throw bad(`offset ${q.offset} is not finite`, 'nested_offset');
  return n;
}
