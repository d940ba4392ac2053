/**
 * mergeAdapters: one module, several adapters, one of PEFT's add_weighted_adapter combination
 * types.
 *
 * semantics 'peft' (default) reproduces PEFT 0.20 (merge_utils + LoraModel), quirks included:
 * - a single adapter is merged with `linear` whatever the method;
 * - linear / ties / dare_* / magnitude_prune work on the A and B stacks separately with
 *   √|w·s| weights (sign on A) and need equal ranks; the output keeps rank r;
 * - *_svd work on ΔW_i = s_i·B_i·A_i with weights w_i·s_i (scaling twice), rank = svdRank or the
 *   largest input rank;
 * - the merged adapter has r = lora_alpha = new rank (scaling 1).
 *
 * semantics 'exact' (`exact: true`) targets Σ w_i·s_i·B_i·A_i, pruned the way the method says:
 * - linear: that sum exactly, as its compressed SVD (every component above rounding, or
 *   svdRank of them); cat: the same sum at rank Σr (PEFT's cat is already exact);
 * - svd: the rank-k truncation of the sum (scaling once);
 * - ties / dare_* / magnitude_prune and their *_svd: the method applied entry by entry to the
 *   deltas ΔW_i = s_i·B_i·A_i with weights w_i (sign election on the unweighted deltas, as PEFT),
 *   then truncated to svdRank or the largest input rank. Unequal ranks are fine.
 */
import { LoraEdgeError } from '../errors.ts';
import type { CombineOptions } from './combine.ts';
import { mergeCat, mergeFactorsPeft } from './factor-path.ts';
import { seededRandomSource } from './random.ts';
import { mergeThroughSvd } from './svd-path.ts';
import { type CombineRule, combineRuleOf, FACTOR_METHODS, type MergeAdapter, type MergeOptions, type MergeResult } from './types.ts';
import { requireEqualRanks, validateAdapters, validateOptions } from './validate.ts';

export function mergeAdapters(adapters: readonly MergeAdapter[], options: MergeOptions): MergeResult {
  const { out, inF } = validateAdapters(adapters, options);
  const { density } = validateOptions(options, { out, inF });
  const exact = options.exact === true;
  const method = !exact && adapters.length === 1 ? 'linear' : options.method;
  const combine: CombineOptions = {
    density,
    majoritySignMethod: options.majoritySignMethod ?? 'total',
    random: options.random ?? seededRandomSource(options.seed ?? 0),
  };
  const head = { method, semantics: exact ? 'exact' : 'peft', inFeatures: inF, outFeatures: out } as const;

  if (method === 'cat') {
    const f = mergeCat(adapters, out, inF, exact);
    return { ...head, ...f, alpha: f.rank };
  }
  const rule = combineRuleOf(method) as CombineRule;
  if (!exact && FACTOR_METHODS.includes(method)) {
    requireEqualRanks(adapters, method);
    const f = mergeFactorsPeft(adapters, rule, combine);
    return { ...head, ...f, alpha: f.rank };
  }

  const maxRank = Math.max(...adapters.map((a) => a.r));
  const rank = exact && method === 'linear' ? (options.svdRank ?? 'numerical') : (options.svdRank ?? maxRank);
  if (rank !== 'numerical' && rank > Math.min(out, inF)) {
    throw new LoraEdgeError(
      'merge_invalid',
      `the merged rank ${rank} (the largest input rank; set svdRank) exceeds min(out, in) = ${Math.min(out, inF)} of the ${out}×${inF} module`,
      { field: 'svdRank' },
    );
  }
  const r = mergeThroughSvd({
    adapters,
    rule,
    out,
    inF,
    rank,
    doubleScaling: !exact,
    combine,
    ...(options.svdClamp !== undefined ? { clamp: options.svdClamp } : {}),
    ...(options.exactSvdMaxDim !== undefined ? { exactSvdMaxDim: options.exactSvdMaxDim } : {}),
    ...(options.randomized !== undefined ? { randomized: options.randomized } : {}),
  });
  const svdInfo: MergeResult['svd'] = { algorithm: r.algorithm };
  if (r.spectralErrorBound !== undefined) svdInfo.spectralErrorBound = r.spectralErrorBound;
  return {
    ...head,
    lora_A: r.lora_A,
    lora_B: r.lora_B,
    rank: r.rank,
    alpha: r.rank,
    singularValues: r.singularValues,
    discardedSpectrum: r.discardedSpectrum,
    svd: svdInfo,
  };
}
