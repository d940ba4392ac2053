/**
 * The merges that end in an SVD (PEFT's *_svd types, and every `exact` merge that must come back
 * as rank-k factors). Output: lora_B = U_k·diag(S_k), lora_A = V_kᵀ, r = alpha = k.
 *
 * Which decomposition:
 * - linear combination (svd): ΔW = Σ c_i·B_i·A_i is low rank, so `lowRankSvd` (QR of the stacked
 *   factors + an SVD of at most Σr×Σr); the out×in matrix is never formed.
 * - ties / dare / magnitude_prune: they act entry by entry on ΔW_i, so the deltas are formed, and
 *   the merged matrix (no longer low rank) is decomposed by one-sided Jacobi when
 *   min(out, in) ≤ EXACT_SVD_MAX_DIM, else by randomized SVD with an a-posteriori error.
 */
import { lowRankSvd } from '../linalg/lowrank.ts';
import type { Matrix64 } from '../linalg/matrix.ts';
import { type RandomizedSvdOptions, randomizedSvd } from '../linalg/randomized.ts';
import { svd } from '../linalg/svd.ts';
import { clampFactors } from './clamp.ts';
import { type CombineOptions, combineTaskTensors } from './combine.ts';
import { deltaWeight } from './delta.ts';
import type { Factors } from './factor-path.ts';
import type { CombineRule, MergeAdapter, SvdAlgorithm } from './types.ts';

/**
 * Up to this min(out, in) the dense merges get an exact SVD. Measured on this project's 2-core
 * machine: Jacobi on 256×256 ≈ 0.35 s, on 512×512 ≈ 3 s (O(n³) per sweep, ~10 sweeps), while the
 * randomized SVD of rank 16 on 4096×4096 costs a few passes over the matrix.
 */
export const EXACT_SVD_MAX_DIM = 256;

export interface SvdFactors extends Factors {
  singularValues: Float64Array;
  discardedSpectrum: number;
  algorithm: SvdAlgorithm;
  spectralErrorBound?: number;
}

export interface SvdMergeParams {
  adapters: readonly MergeAdapter[];
  rule: CombineRule;
  out: number;
  inF: number;
  /** Output rank, or 'numerical' for every component above rounding level (exact linear). */
  rank: number | 'numerical';
  /** PEFT's *_svd scale each ΔW_i = s_i·B_i·A_i by w_i·s_i again; exact uses w_i. */
  doubleScaling: boolean;
  combine: CombineOptions;
  clamp?: number;
  exactSvdMaxDim?: number;
  randomized?: RandomizedSvdOptions;
}

export function mergeThroughSvd(p: SvdMergeParams): SvdFactors {
  const result = p.rule === 'linear' ? lowRankPath(p) : densePath(p);
  if (p.clamp !== undefined) clampFactors(result.lora_B, result.lora_A, p.clamp);
  return result;
}

function coefficient(ad: MergeAdapter, doubleScaling: boolean): number {
  return doubleScaling ? ad.weight * ad.scaling * ad.scaling : ad.weight * ad.scaling;
}

function lowRankPath(p: SvdMergeParams): SvdFactors {
  const terms = p.adapters.map((ad) => ({
    a: { rows: ad.r, cols: p.inF, data: ad.lora_A },
    b: { rows: p.out, cols: ad.r, data: ad.lora_B },
    coef: coefficient(ad, p.doubleScaling),
  }));
  const want = p.rank;
  const lr = lowRankSvd(terms, { rank: want === 'numerical' ? numericalRank : want });
  const k = want === 'numerical' ? lr.u.cols : want;
  return toFactors(lr.u, lr.s, lr.vt, k, p.out, p.inF, tailNorm(lr.s, k), 'low-rank');
}

/** Components above float64 rounding of the largest one (at least 1). */
function numericalRank(s: Float64Array): number {
  const s0 = s[0] ?? 0;
  let k = 0;
  while (k < s.length && (s[k] as number) > s0 * 1e-12) k++;
  return Math.max(1, k);
}

function tailNorm(s: Float64Array, k: number): number {
  let t = 0;
  for (let i = k; i < s.length; i++) t += (s[i] as number) ** 2;
  return Math.sqrt(t);
}

function densePath(p: SvdMergeParams): SvdFactors {
  const { out, inF } = p;
  const k = p.rank === 'numerical' ? Math.min(out, inF) : p.rank;
  const deltas = p.adapters.map((ad) => deltaWeight(ad.lora_A, ad.lora_B, ad.r, out, inF, ad.scaling));
  const weights = p.adapters.map((ad) => (p.doubleScaling ? ad.weight * ad.scaling : ad.weight));
  // The deltas are ours: prune them in place, and let them go before the decomposition.
  const merged = combineTaskTensors(deltas, weights, p.rule, { ...p.combine, consume: true });
  deltas.length = 0;
  const m = { rows: out, cols: inF, data: merged };
  if (Math.min(out, inF) <= (p.exactSvdMaxDim ?? EXACT_SVD_MAX_DIM)) {
    const d = svd(m, { rank: k });
    return toFactors(d.u, d.s, d.vt, k, out, inF, tailNorm(d.s, k), 'jacobi');
  }
  const r = randomizedSvd(m, k, p.randomized);
  const f = toFactors(r.u, r.s, r.vt, k, out, inF, r.residualFrobenius, 'randomized');
  if (r.spectralErrorBound !== undefined) f.spectralErrorBound = r.spectralErrorBound;
  return f;
}

/**
 * lora_B = U_k·diag(S_k) (out×k), lora_A = V_kᵀ (k×in), in float32. When fewer than k components
 * exist (k > Σr on the low-rank path), the extra columns and rows are zero: the product is the
 * same as PEFT's, whose extra singular values are zero.
 */
function toFactors(
  u: Matrix64,
  s: Float64Array,
  vt: Matrix64,
  k: number,
  out: number,
  inF: number,
  discardedSpectrum: number,
  algorithm: SvdAlgorithm,
): SvdFactors {
  const have = Math.min(k, u.cols, vt.rows);
  const lora_B = new Float32Array(out * k);
  const lora_A = new Float32Array(k * inF);
  for (let i = 0; i < out; i++) for (let c = 0; c < have; c++) lora_B[i * k + c] = (u.data[i * u.cols + c] as number) * (s[c] as number);
  for (let c = 0; c < have; c++) lora_A.set(vt.data.subarray(c * inF, (c + 1) * inF), c * inF);
  return { lora_A, lora_B, rank: k, singularValues: s, discardedSpectrum, algorithm };
}
