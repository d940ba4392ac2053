import { LoraEdgeError } from '../errors.ts';
import { addRowDelta, checkShapes } from './fuse.ts';
import type { DeltaTerm } from './terms.ts';

/**
 * The unmerged form as one stack: y = rowScale ⊙ (W x) + B_s (A_s x), with
 * A_s = [A_1; A_2; …] (R×in) and B_s = [c_1 B_1, c_2 B_2, …] (out×R). LoRA terms have
 * c = scale; a DoRA term has c = g·s per output row and adds (g − 1) to rowScale. This is the
 * batched layout the kernels consume: one shrink matmul, one expand matmul.
 */
export interface StackedLora {
  rank: number;
  A: Float32Array;
  B: Float32Array;
  /** Present only when a DoRA term rescales W x. */
  rowScale?: Float32Array;
}

/** `W` is read only for DoRA terms (their row norms); pass undefined when the mix has none. */
export function stackTerms(W: Float32Array | undefined, out: number, inF: number, terms: readonly DeltaTerm[]): StackedLora {
  checkShapes(W, out, inF, terms);
  const rank = terms.reduce((s, t) => s + t.r, 0);
  const A = new Float32Array(rank * inF);
  const B = new Float32Array(out * rank);
  let rowScale: Float32Array | undefined;
  let col = 0;
  for (const t of terms) {
    A.set(t.A, col * inF);
    if (t.magnitude && !W) throw new LoraEdgeError('invalid_argument', 'a DoRA term needs the base weight to stack');
    const g = t.magnitude && W ? doraRowScale(W, out, inF, t) : undefined;
    if (g) {
      rowScale ??= new Float32Array(out).fill(1);
      for (let i = 0; i < out; i++) rowScale[i] = (rowScale[i] as number) + (g[i] as number) - 1;
    }
    for (let i = 0; i < out; i++) {
      const c = t.scale * (g ? (g[i] as number) : 1);
      for (let k = 0; k < t.r; k++) B[i * rank + col + k] = c * (t.B[i * t.r + k] as number);
    }
    col += t.r;
  }
  return rowScale ? { rank, A, B, rowScale } : { rank, A, B };
}

/** DoRA's per-row factor g = m / ‖W + s·B A‖_row: fixed per adapter, so computed once at load. */
export function doraRowScale(W: Float32Array, out: number, inF: number, t: DeltaTerm): Float32Array {
  const g = new Float32Array(out);
  const tmp = new Float64Array(inF);
  for (let i = 0; i < out; i++) {
    for (let j = 0; j < inF; j++) tmp[j] = W[i * inF + j] as number;
    addRowDelta(tmp, t, i, inF, t.scale);
    let ss = 0;
    for (let j = 0; j < inF; j++) ss += (tmp[j] as number) ** 2;
    g[i] = (t.magnitude?.[i] as number) / Math.sqrt(ss);
  }
  return g;
}

/** y [n, out] = x [n, in] · Wᵀ, float64 accumulation. A reference path, not the runner's kernel. */
export function linearForward(x: Float32Array, n: number, W: Float32Array, out: number, inF: number): Float32Array {
  const y = new Float32Array(n * out);
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < out; i++) {
      let s = 0;
      for (let j = 0; j < inF; j++) s += (x[b * inF + j] as number) * (W[i * inF + j] as number);
      y[b * out + i] = s;
    }
  }
  return y;
}

/** Applies the stack to inputs x [n, in] over the base weight: y = rowScale ⊙ (W x) + B_s (A_s x). */
export function stackedForward(x: Float32Array, n: number, W: Float32Array, out: number, inF: number, s: StackedLora): Float32Array {
  const y = linearForward(x, n, W, out, inF);
  const t = linearForward(x, n, s.A, s.rank, inF); // shrink
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < out; i++) {
      let v = (y[b * out + i] as number) * (s.rowScale ? (s.rowScale[i] as number) : 1);
      for (let k = 0; k < s.rank; k++) v += (s.B[i * s.rank + k] as number) * (t[b * s.rank + k] as number); // expand
      y[b * out + i] = v;
    }
  }
  return y;
}

/**
 * The unmerged forward term by term, as PEFT's layers run it: y = W x + Σ_lora s·B(A x)
 * + Σ_dora [(g − 1)·W x + g·s·B(A x)].
 */
export function unmergedForward(
  x: Float32Array,
  n: number,
  W: Float32Array,
  out: number,
  inF: number,
  terms: readonly DeltaTerm[],
): Float32Array {
  checkShapes(W, out, inF, terms);
  const base = linearForward(x, n, W, out, inF);
  const y = Float64Array.from(base);
  for (const t of terms) {
    const ax = linearForward(x, n, t.A, t.r, inF);
    const bax = linearForward(ax, n, t.B, out, t.r);
    const g = t.magnitude ? doraRowScale(W, out, inF, t) : undefined;
    for (let b = 0; b < n; b++) {
      for (let i = 0; i < out; i++) {
        const idx = b * out + i;
        const gi = g ? (g[i] as number) : 1;
        y[idx] = (y[idx] as number) + (gi - 1) * (base[idx] as number) + gi * t.scale * (bax[idx] as number);
      }
    }
  }
  return Float32Array.from(y);
}
