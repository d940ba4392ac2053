/**
 * PEFT's merge_utils on flat float32 task tensors: prune (magnitude or DARE), elect signs,
 * weight, and sum or take the disjoint mean. Each step rounds to float32 where torch does
 * (weights are a float32 tensor; products and the running sum over the stacked dim 0 are float32),
 * so results agree with PEFT to the last bit or two.
 */

import { magnitudePrune } from './topk.ts';
import type { CombineRule, MajoritySignMethod, RandomSource } from './types.ts';

const f = Math.fround;

export interface CombineOptions {
  density: number;
  majoritySignMethod: MajoritySignMethod;
  random: RandomSource;
  /** The tensors may be overwritten by the pruning (saves a copy per tensor on large deltas). */
  consume?: boolean;
}

/**
 * Combines n equally shaped task tensors with float32 weights under a rule. The random source is
 * drawn once per tensor, in order, and only by the DARE rules with density < 1 (as PEFT).
 */
export function combineTaskTensors(
  tensors: readonly Float32Array[],
  weights: readonly number[],
  rule: CombineRule,
  opts: CombineOptions,
): Float32Array {
  const w = weights.map(f);
  switch (rule) {
    case 'linear':
      return weightedSum(tensors, w);
    case 'magnitude_prune':
      return weightedSum(
        tensors.map((t) => magnitudePrune(t, opts.density, opts.consume)),
        w,
      );
    case 'ties':
      return disjointMean(
        tensors.map((t) => magnitudePrune(t, opts.density, opts.consume)),
        w,
        opts.majoritySignMethod,
      );
    case 'dare_linear':
      return weightedSum(dropAndRescale(tensors, opts), w);
    case 'dare_ties':
      return disjointMean(dropAndRescale(tensors, opts), w, opts.majoritySignMethod);
  }
}

/** DARE: keep each entry with probability `density`, divide the kept ones by it. */
function dropAndRescale(tensors: readonly Float32Array[], opts: CombineOptions): Float32Array[] {
  if (opts.density >= 1) return tensors.slice();
  const d = f(opts.density);
  return tensors.map((t) => {
    const mask = opts.random.bernoulliMask(t.length, opts.density);
    const out = opts.consume ? t : new Float32Array(t.length);
    // tensor·mask / density, as PEFT writes it (and branch-free on a random mask).
    for (let i = 0; i < t.length; i++) out[i] = ((t[i] as number) * +((mask[i] as number) !== 0)) / d;
    return out;
  });
}

/** Σ_i w_i·t_i, the sum running over the stacked tensors in order, in float32. */
function weightedSum(tensors: readonly Float32Array[], w: readonly number[]): Float32Array {
  const n = (tensors[0] as Float32Array).length;
  const out = new Float32Array(n);
  tensors.forEach((t, k) => {
    const wk = w[k] as number;
    // Storing into the float32 array rounds the sum; the product is rounded first, as torch.
    if (k === 0) for (let i = 0; i < n; i++) out[i] = (t[i] as number) * wk;
    else for (let i = 0; i < n; i++) out[i] = (out[i] as number) + f((t[i] as number) * wk);
  });
  return out;
}

/**
 * TIES' elect + disjoint merge. The sign is elected on the unweighted (pruned) tensors: by their
 * sum ("total") or by counting signs ("frequency"); a tie at 0 elects +. Entries agreeing with
 * the elected sign (zeros never agree) are weighted and averaged over how many agreed.
 * Works in cache-sized chunks with the tensor loop outside, so every inner loop is one
 * monomorphic pass over contiguous floats (float32 arrays round each stored sum as torch does).
 */
function disjointMean(tensors: readonly Float32Array[], w: readonly number[], method: MajoritySignMethod): Float32Array {
  const n = (tensors[0] as Float32Array).length;
  const out = new Float32Array(n);
  const CHUNK = 8192;
  const vote = new Float32Array(CHUNK);
  const sum = new Float32Array(CHUNK);
  const count = new Float32Array(CHUNK);
  for (let c0 = 0; c0 < n; c0 += CHUNK) {
    const len = Math.min(CHUNK, n - c0);
    vote.fill(0);
    sum.fill(0);
    count.fill(0);
    for (const t of tensors) {
      if (method === 'total') for (let i = 0; i < len; i++) vote[i] = (vote[i] as number) + (t[c0 + i] as number);
      else for (let i = 0; i < len; i++) vote[i] = (vote[i] as number) + Math.sign(t[c0 + i] as number);
    }
    for (let i = 0; i < len; i++) vote[i] = (vote[i] as number) >= 0 ? 1 : -1; // the elected sign
    for (let k = 0; k < tensors.length; k++) {
      const t = tensors[k] as Float32Array;
      const wk = w[k] as number;
      // Branch-free: signs agree iff v·elected > 0 (so zeros never agree); m is 1 or 0.
      for (let i = 0; i < len; i++) {
        const v = t[c0 + i] as number;
        const m = +(v * (vote[i] as number) > 0);
        sum[i] = (sum[i] as number) + f(v * m * wk);
        count[i] = (count[i] as number) + m;
      }
    }
    for (let i = 0; i < len; i++) out[c0 + i] = (sum[i] as number) / Math.max(count[i] as number, 1);
  }
  return out;
}
