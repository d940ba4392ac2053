import { LoraEdgeError } from '../errors.ts';
import type { DeltaTerm } from './terms.ts';

/**
 * Fuses terms into a base weight W [out, in] (PEFT's merge_and_unload), returning a new array:
 *
 *   W' = W + Σ_lora scale·B A + Σ_dora (g ⊙ (W + s·B A) − W),   g = m / ‖W + s·B A‖_row
 *
 * For a single DoRA adapter that is PEFT's DoRA merge. For mixes it is exactly what the
 * unmerged forward computes (each DoRA term normalised against the base W alone), so merged
 * and unmerged serving agree. Accumulates in float64 per row and rounds once.
 */
export function fuseModule(W: Float32Array, out: number, inF: number, terms: readonly DeltaTerm[]): Float32Array {
  checkShapes(W, out, inF, terms);
  const result = new Float32Array(out * inF);
  const acc = new Float64Array(inF);
  const tmp = new Float64Array(inF);
  const lora = terms.filter((t) => !t.magnitude);
  const dora = terms.filter((t) => t.magnitude);
  for (let i = 0; i < out; i++) {
    const row = i * inF;
    for (let j = 0; j < inF; j++) acc[j] = W[row + j] as number;
    for (const t of lora) addRowDelta(acc, t, i, inF, t.scale);
    for (const t of dora) {
      for (let j = 0; j < inF; j++) tmp[j] = W[row + j] as number;
      addRowDelta(tmp, t, i, inF, t.scale);
      let ss = 0;
      for (let j = 0; j < inF; j++) ss += (tmp[j] as number) * (tmp[j] as number);
      const g = (t.magnitude?.[i] as number) / Math.sqrt(ss);
      for (let j = 0; j < inF; j++) acc[j] = (acc[j] as number) + g * (tmp[j] as number) - (W[row + j] as number);
    }
    for (let j = 0; j < inF; j++) result[row + j] = acc[j] as number;
  }
  return result;
}

/** acc += scale · B[i, :] A: eight rank-one rows per pass to cut loads and stores of acc (measured 1.45× over four). */
export function addRowDelta(acc: Float64Array, t: DeltaTerm, i: number, inF: number, scale: number): void {
  const { A, B, r } = t;
  const brow = i * r;
  let k = 0;
  for (; k + 8 <= r; k += 8) {
    const b = brow + k;
    const c0 = scale * (B[b] as number);
    const c1 = scale * (B[b + 1] as number);
    const c2 = scale * (B[b + 2] as number);
    const c3 = scale * (B[b + 3] as number);
    const c4 = scale * (B[b + 4] as number);
    const c5 = scale * (B[b + 5] as number);
    const c6 = scale * (B[b + 6] as number);
    const c7 = scale * (B[b + 7] as number);
    const a0 = k * inF;
    const a1 = a0 + inF;
    const a2 = a1 + inF;
    const a3 = a2 + inF;
    const a4 = a3 + inF;
    const a5 = a4 + inF;
    const a6 = a5 + inF;
    const a7 = a6 + inF;
    for (let j = 0; j < inF; j++) {
      acc[j] =
        (acc[j] as number) +
        c0 * (A[a0 + j] as number) +
        c1 * (A[a1 + j] as number) +
        c2 * (A[a2 + j] as number) +
        c3 * (A[a3 + j] as number) +
        c4 * (A[a4 + j] as number) +
        c5 * (A[a5 + j] as number) +
        c6 * (A[a6 + j] as number) +
        c7 * (A[a7 + j] as number);
    }
  }
  for (; k < r; k++) {
    const c = scale * (B[brow + k] as number);
    const a = k * inF;
    for (let j = 0; j < inF; j++) acc[j] = (acc[j] as number) + c * (A[a + j] as number);
  }
}

export function checkShapes(W: Float32Array | undefined, out: number, inF: number, terms: readonly DeltaTerm[]): void {
  if (W && W.length !== out * inF) throw new LoraEdgeError('invalid_argument', `weight holds ${W.length} values, not ${out}×${inF}`);
  for (const t of terms) {
    if (t.A.length !== t.r * inF || t.B.length !== out * t.r || (t.magnitude && t.magnitude.length !== out)) {
      throw new LoraEdgeError('adapter_shape_mismatch', `factors do not fit a ${out}×${inF} module at rank ${t.r}`, { field: t.source });
    }
  }
}
