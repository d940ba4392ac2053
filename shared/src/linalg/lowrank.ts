/**
 * SVD of a low-rank product ΔW = Σ_i c_i·B_i·A_i (B_i out×r_i, A_i r_i×in) without forming the
 * out×in matrix. Stack the factors: ΔW = B̂·Â with B̂ = [c_1B_1 … c_nB_n] (out×R) and Â = [A_1; …; A_n]
 * (R×in). With B̂ = Q_B·R_B and Âᵀ = Q_A·R_A, ΔW = Q_B·(R_B·R_Aᵀ)·Q_Aᵀ, so the SVD of the small
 * R_B·R_Aᵀ (at most R×R) rotated by Q_B and Q_A is the SVD of ΔW: O((out+in)·R²) instead of
 * O(out·in·min(out,in)).
 */
import { matmulABt } from './matmul.ts';
import { type Matrix, type Matrix64, transpose } from './matrix.ts';
import { householderQr, qrR, qTimesSmall } from './qr.ts';
import { svd } from './svd.ts';

export interface LowRankTerm {
  /** r×in */
  a: Matrix;
  /** out×r */
  b: Matrix;
  coef: number;
}

export interface LowRankSvd {
  /** out×k, orthonormal columns. */
  u: Matrix64;
  /** Every singular value of ΔW that can be nonzero (min(out, in, Σr) of them), descending. */
  s: Float64Array;
  /** k×in, orthonormal rows. */
  vt: Matrix64;
}

export interface LowRankSvdOptions {
  /**
   * How many singular vectors to build (default: all): a number, or a function of the singular
   * values (to pick a numerical rank without decomposing twice).
   */
  rank?: number | ((s: Float64Array) => number);
}

export function lowRankSvd(terms: readonly LowRankTerm[], opts: LowRankSvdOptions = {}): LowRankSvd {
  const first = terms[0];
  if (!first) throw new RangeError('lowRankSvd: no terms');
  const out = first.b.rows;
  const inF = first.a.cols;
  let R = 0;
  for (const t of terms) {
    if (t.a.cols !== inF || t.b.rows !== out || t.a.rows !== t.b.cols) {
      throw new RangeError(`lowRankSvd: term shapes ${t.b.rows}×${t.b.cols} · ${t.a.rows}×${t.a.cols} do not match ${out}×?·?×${inF}`);
    }
    R += t.a.rows;
  }
  // Column-major stacks: B̂'s columns are strided gathers of B_i, Âᵀ's columns are A_i's rows.
  const bcols = new Float64Array(out * R);
  const acols = new Float64Array(inF * R);
  let col = 0;
  for (const t of terms) {
    const r = t.a.rows;
    const B = t.b.data;
    for (let k = 0; k < r; k++) {
      const off = (col + k) * out;
      for (let i = 0; i < out; i++) bcols[off + i] = t.coef * (B[i * r + k] as number);
      const A = t.a.data;
      const aoff = (col + k) * inF;
      for (let j = 0; j < inF; j++) acols[aoff + j] = A[k * inF + j] as number;
    }
    col += r;
  }
  const hB = householderQr(bcols, out, R);
  const hA = householderQr(acols, inF, R);
  const core = matmulABt(qrR(hB), qrR(hA)); // pB×pA
  const small = svd(core);
  const p = small.s.length;
  const want = typeof opts.rank === 'function' ? opts.rank(small.s) : (opts.rank ?? p);
  const k = Math.max(0, Math.min(want, p));

  // U = Q_B·U_m[:, :k]; V = Q_A·V_m[:, :k] (whose column-major form is Vᵀ row-major).
  const um = leadingCols(small.u, k);
  const vm = leadingCols(transpose(small.vt), k);
  const ucols = qTimesSmall(hB, um);
  const vt = qTimesSmall(hA, vm);
  const u = new Float64Array(out * k);
  for (let c = 0; c < k; c++) for (let i = 0; i < out; i++) u[i * k + c] = ucols[c * out + i] as number;
  return { u: { rows: out, cols: k, data: u }, s: small.s, vt: { rows: k, cols: inF, data: vt } };
}

function leadingCols(x: Matrix64, k: number): Matrix64 {
  const out = new Float64Array(x.rows * k);
  for (let i = 0; i < x.rows; i++) for (let j = 0; j < k; j++) out[i * k + j] = x.data[i * x.cols + j] as number;
  return { rows: x.rows, cols: k, data: out };
}
