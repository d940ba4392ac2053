/**
 * Static rank-one selection (the multi-LoRA notes this project started from): write each
 * weighted delta through its own small SVD, w_i·s_i·B_i·A_i = Σ_k d_ik·u_ik·v_ikᵀ, pool the
 * rank-one components of all adapters and keep the k largest d. The kept part is returned as
 * factors; what was dropped is measured exactly (its Frobenius norm, through Gram matrices of
 * the dropped vectors: components of different adapters are not orthogonal to each other).
 */
import { LoraEdgeError } from '../errors.ts';
import { lowRankSvd } from '../linalg/lowrank.ts';
import { matmulAtB } from '../linalg/matmul.ts';
import type { MergeAdapter, MergeResult } from './types.ts';
import { validateAdapters } from './validate.ts';

export interface RankOneOptions {
  /** Components kept (default: the mean input rank, rounded, as in (r_1 + r_2)/2). */
  k?: number;
  inFeatures?: number;
  outFeatures?: number;
}

interface Component {
  adapter: number;
  d: number;
  /** out */
  u: Float64Array;
  /** in */
  v: Float64Array;
}

export function selectRankOneComponents(adapters: readonly MergeAdapter[], opts: RankOneOptions = {}): MergeResult {
  const { out, inF } = validateAdapters(adapters, opts);
  const meanRank = adapters.reduce((s, a) => s + a.r, 0) / adapters.length;
  const k = opts.k ?? Math.max(1, Math.round(meanRank));
  if (!Number.isInteger(k) || k < 1) throw new LoraEdgeError('merge_invalid', `k must be a positive integer, got ${k}`, { field: 'k' });

  const comps: Component[] = [];
  adapters.forEach((ad, idx) => {
    const lr = lowRankSvd([
      { a: { rows: ad.r, cols: inF, data: ad.lora_A }, b: { rows: out, cols: ad.r, data: ad.lora_B }, coef: ad.weight * ad.scaling },
    ]);
    for (let c = 0; c < lr.u.cols; c++) {
      const u = new Float64Array(out);
      for (let i = 0; i < out; i++) u[i] = lr.u.data[i * lr.u.cols + c] as number;
      comps.push({ adapter: idx, d: lr.s[c] as number, u, v: lr.vt.data.slice(c * inF, (c + 1) * inF) });
    }
  });
  // Stable sort: equal values keep adapter order, so the choice is deterministic.
  const order = comps.map((_, i) => i).sort((x, y) => (comps[y] as Component).d - (comps[x] as Component).d);
  const rank = Math.min(k, comps.length);
  const kept = order.slice(0, rank).map((i) => comps[i] as Component);
  const dropped = order.slice(rank).map((i) => comps[i] as Component);

  const lora_B = new Float32Array(out * rank);
  const lora_A = new Float32Array(rank * inF);
  kept.forEach((c, j) => {
    for (let i = 0; i < out; i++) lora_B[i * rank + j] = (c.u[i] as number) * c.d;
    lora_A.set(c.v, j * inF);
  });

  const perAdapter = new Float64Array(adapters.length);
  for (const c of dropped) perAdapter[c.adapter] = (perAdapter[c.adapter] as number) + c.d * c.d;
  return {
    method: 'rank_one_static',
    semantics: 'exact',
    lora_A,
    lora_B,
    rank,
    alpha: rank,
    inFeatures: inF,
    outFeatures: out,
    singularValues: Float64Array.from(kept.map((c) => c.d)),
    discardedSingularValues: Float64Array.from(dropped.map((c) => c.d)),
    discardedSpectrum: droppedNorm(dropped, out, inF),
    errorBound: perAdapter.reduce((s, x) => s + Math.sqrt(x), 0),
  };
}

/** ‖Σ_j d_j·u_j·v_jᵀ‖_F² = Σ_jl d_j·d_l·(u_j·u_l)·(v_j·v_l), with the Gram matrices as products. */
function droppedNorm(dropped: readonly Component[], out: number, inF: number): number {
  const n = dropped.length;
  if (n === 0) return 0;
  const U = new Float64Array(out * n);
  const V = new Float64Array(inF * n);
  dropped.forEach((c, j) => {
    for (let i = 0; i < out; i++) U[i * n + j] = (c.u[i] as number) * c.d;
    for (let i = 0; i < inF; i++) V[i * n + j] = c.v[i] as number;
  });
  const gu = matmulAtB({ rows: out, cols: n, data: U }, { rows: out, cols: n, data: U }).data;
  const gv = matmulAtB({ rows: inF, cols: n, data: V }, { rows: inF, cols: n, data: V }).data;
  let s = 0;
  for (let i = 0; i < n * n; i++) s += (gu[i] as number) * (gv[i] as number);
  return Math.sqrt(Math.max(0, s));
}
