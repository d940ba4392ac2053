/**
 * The merge contract: one target module, several LoRA adapters, one of PEFT's
 * `add_weighted_adapter` combination types. PEFT's semantics (quirks included) by default;
 * `exact: true` for the weighted sum of deltas PEFT's methods mean to compute.
 */
import type { RandomizedSvdOptions } from '../linalg/randomized.ts';

export const MERGE_METHODS = [
  'linear',
  'cat',
  'svd',
  'ties',
  'ties_svd',
  'dare_linear',
  'dare_ties',
  'dare_linear_svd',
  'dare_ties_svd',
  'magnitude_prune',
  'magnitude_prune_svd',
] as const;

export type MergeMethod = (typeof MERGE_METHODS)[number];

export type MajoritySignMethod = 'total' | 'frequency';

/** Where DARE's keep-masks come from. */
export interface RandomSource {
  /** n draws, each 1 (keep) with probability p, else 0. */
  bernoulliMask(n: number, p: number): Uint8Array;
}

/** One adapter's factors for the module being merged. */
export interface MergeAdapter {
  /** Named in error messages. */
  name: string;
  /** [r, in], row-major. */
  lora_A: Float32Array;
  /** [out, r], row-major. */
  lora_B: Float32Array;
  r: number;
  /** lora_alpha / r (or / √r with rsLoRA), after rank/alpha patterns. */
  scaling: number;
  /** The mix weight; may be negative. */
  weight: number;
}

export interface MergeOptions {
  method: MergeMethod;
  /** Fraction kept by the pruning methods, in (0, 1]; required by ties, dare_* and magnitude_prune*. */
  density?: number;
  /** Rank of the *_svd outputs (default: the largest input rank, as PEFT). */
  svdRank?: number;
  /** PEFT's svd_clamp: quantile in [0, 1] of the signed entries of U·S and Vh (default: no clamping). */
  svdClamp?: number;
  majoritySignMethod?: MajoritySignMethod;
  /** DARE masks; default a SeededRng stream from `seed`. */
  random?: RandomSource;
  seed?: number;
  /** The exact weighted sum instead of PEFT's arithmetic (semantics listed in merge.ts). */
  exact?: boolean;
  /** Expected module shape, checked against the factors when given. */
  inFeatures?: number;
  outFeatures?: number;
  /** min(out, in) up to which dense deltas get the exact (Jacobi) SVD; above, the randomized one. */
  exactSvdMaxDim?: number;
  randomized?: RandomizedSvdOptions;
}

export type SvdAlgorithm = 'low-rank' | 'jacobi' | 'randomized';

export interface MergeResult {
  /** The method applied: PEFT merges a single adapter with `linear` whatever was asked. */
  method: MergeMethod | 'rank_one_static';
  semantics: 'peft' | 'exact';
  /** [rank, inFeatures] */
  lora_A: Float32Array;
  /** [outFeatures, rank] */
  lora_B: Float32Array;
  rank: number;
  /** = rank, as PEFT writes it: the merged adapter's scaling is 1. */
  alpha: number;
  inFeatures: number;
  outFeatures: number;
  /** Singular values of the matrix that was decomposed (all that were computed), descending. */
  singularValues?: Float64Array;
  /** ‖target − lora_B·lora_A‖_F dropped by the rank truncation (before any clamping). */
  discardedSpectrum?: number;
  svd?: { algorithm: SvdAlgorithm; spectralErrorBound?: number };
  /** Rank-one selection only: the singular values of the components left out. */
  discardedSingularValues?: Float64Array;
  /** Rank-one selection only: Σ over adapters of ‖dropped part‖_F, a triangle-inequality bound. */
  errorBound?: number;
}

/** Methods PEFT runs on the stacked A and B factors, refusing unequal ranks. */
export const FACTOR_METHODS: readonly MergeMethod[] = ['linear', 'ties', 'dare_linear', 'dare_ties', 'magnitude_prune'];

export function isSvdMethod(m: MergeMethod): boolean {
  return m.endsWith('_svd') || m === 'svd';
}

/** The elementwise rule a method applies to its task tensors (factors or deltas). */
export type CombineRule = 'linear' | 'ties' | 'dare_linear' | 'dare_ties' | 'magnitude_prune';

export function combineRuleOf(m: MergeMethod): CombineRule | undefined {
  switch (m) {
    case 'linear':
    case 'svd':
      return 'linear';
    case 'ties':
    case 'ties_svd':
      return 'ties';
    case 'dare_linear':
    case 'dare_linear_svd':
      return 'dare_linear';
    case 'dare_ties':
    case 'dare_ties_svd':
      return 'dare_ties';
    case 'magnitude_prune':
    case 'magnitude_prune_svd':
      return 'magnitude_prune';
    default:
      return undefined;
  }
}
