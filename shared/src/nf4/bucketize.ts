/**
 * `torch.bucketize(x, bounds, right=False)`: the number of bounds strictly below x, so a value
 * equal to a midpoint goes to the lower code. A plain binary search (the reference), a
 * branch-free one for the cold paths (tail blocks, the 8-bit absmax) and a table-driven one for
 * the NF4 hot loop.
 */
import { ABSMAX_FLOOR, midpoints, NF4_CODE } from './tables.ts';

/** Count of `bounds` (sorted) strictly below x: the plain binary search. */
export function bucketize(bounds: Float32Array, x: number): number {
  let lo = 0;
  let hi = bounds.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((bounds[mid] as number) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** `bounds` padded with +Infinity to a power-of-two length, for `bucketizePadded`. */
export function padBounds(bounds: Float32Array): Float32Array {
  let size = 1;
  while (size < bounds.length + 1) size *= 2;
  const out = new Float32Array(size).fill(Number.POSITIVE_INFINITY);
  out.set(bounds);
  return out;
}

/**
 * The same count, branch-free: log2(length) halving steps whose outcome is added, not branched
 * on (a binary search mispredicts about every other step on real data).
 */
export function bucketizePadded(padded: Float32Array, x: number): number {
  let i = 0;
  for (let step = padded.length >> 1; step > 0; step >>= 1) i += +(x > (padded[i + step - 1] as number)) * step;
  return i;
}

/**
 * NF4 bucketize of p = x·inv without rounding p to float32 first:
 * - `cells[(p * CELLS + CELLS) | 0]` is the code of every value in that cell (width 1/2048)
 *   when no midpoint lies in it; otherwise CELL_HAS_MIDPOINT | t, t the midpoints below it, and
 *   one comparison with midpoint t finishes the count. Midpoints are ~0.08 apart, so a cell
 *   holds at most one, and only ~0.4% of values take the (well-predicted) comparison branch;
 * - `thresholds[t]` is the largest double whose float32 rounding is <= midpoint t, so
 *   `p > thresholds[t]` equals `fround(p) > midpoint[t]` (bucketize sees the float32 product).
 * p is exact in double (a product of two float32), and the cell edges are float32 values, so
 * rounding p to float32 (or p·CELLS + CELLS to double) can move it onto the next cell's lower
 * edge, never across a midpoint the cell does not know about.
 */
export interface Nf4Bucketizer {
  cells: Uint8Array;
  thresholds: Float64Array;
  /** CELLS, carried here so hot loops read it as a local. */
  scale: number;
  /** The absmax clamp (1e-38 as float32), likewise. */
  floor: number;
}

/** Set in a cell that holds a midpoint; the low 4 bits are the midpoints below the cell. */
export const CELL_HAS_MIDPOINT = 0x10;

export const CELLS = 2048;

let nf4Bucketizer: Nf4Bucketizer | undefined;

export function getNf4Bucketizer(): Nf4Bucketizer {
  nf4Bucketizer ??= buildBucketizer(midpoints(NF4_CODE));
  return nf4Bucketizer;
}

function buildBucketizer(bounds: Float32Array): Nf4Bucketizer {
  // |p| <= 1 + 2^-23 in practice (|x| <= absmax); spare cells keep a rounding overshoot in range.
  const cells = new Uint8Array(2 * CELLS + 8);
  for (let c = 0; c < cells.length; c++) {
    const low = (c - CELLS) / CELLS;
    const t = bucketize(bounds, low);
    const high = low + 1 / CELLS;
    if (t + 1 < bounds.length && (bounds[t + 1] as number) < high) {
      throw new Error('internal: two NF4 midpoints in one bucketize cell');
    }
    cells[c] = t < bounds.length && (bounds[t] as number) < high ? CELL_HAS_MIDPOINT | t : t;
  }
  const thresholds = new Float64Array(bounds.length + 1).fill(Number.POSITIVE_INFINITY);
  bounds.forEach((b, t) => {
    thresholds[t] = roundingThreshold(b);
  });
  return { cells, thresholds, scale: CELLS, floor: ABSMAX_FLOOR };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const f64 = new Float64Array(1);
const u64 = new BigUint64Array(f64.buffer);

/** The next float32 above b (b finite). */
function nextUpF32(b: number): number {
  if (b === 0) return 2 ** -149;
  f32[0] = b;
  u32[0] = (u32[0] as number) + (b > 0 ? 1 : -1);
  return f32[0] as number;
}

/** The double just below d (d finite, nonzero). */
function nextDownF64(d: number): number {
  f64[0] = d;
  u64[0] = (u64[0] as bigint) + (d > 0 ? -1n : 1n);
  return f64[0] as number;
}

/** Largest double p with fround(p) <= b: the midpoint to the next float32, or just below it when the tie rounds up. */
export function roundingThreshold(b: number): number {
  const up = nextUpF32(b);
  const mid = (b + up) / 2; // exact: two float32 differ in few enough bits
  return Math.fround(mid) === b ? mid : nextDownF64(mid);
}
