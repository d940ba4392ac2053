/**
 * Randomized truncated SVD (Halko, Martinsson & Tropp 2011): a Gaussian range finder with power
 * iterations, re-orthonormalised by QR after every product so the small singular directions are
 * not lost to rounding, then an exact SVD of the small l×n projection Qᵀ·A.
 * For matrices that are not low rank (pruned deltas of ties_svd & co): 2·(q+1)+1 passes over A
 * instead of the O(m·n·min(m,n)) of a full SVD.
 *
 * A posteriori error, reported with every result:
 * - `residualFrobenius` = ‖A − U_k·S_k·V_kᵀ‖_F, exact up to rounding: U_k·S_k·V_kᵀ = U_kU_kᵀ·A is an
 *   orthogonal projection of A, so ‖A − ·‖_F² = ‖A‖_F² − Σ_{i<k} σ_i².
 * - `spectralErrorBound`: ‖A − U_kU_kᵀA‖₂ ≤ 10·√(2/π)·max_i ‖(I − U_kU_kᵀ)·A·ω_i‖ for `probes`
 *   fresh Gaussian ω_i, with probability at least 1 − 10^(−probes) (Halko et al., §4.3).
 */
import { atbTransposedInto, matmulABt } from './matmul.ts';
import type { Matrix, Matrix64 } from './matrix.ts';
import { householderQr, thinQColumns } from './qr.ts';
import { SeededRng } from './rng.ts';
import { svd } from './svd.ts';

export interface RandomizedSvdOptions {
  /** Extra sampled directions beyond k (default 10). */
  oversample?: number;
  /** Power iterations (default 2): each one sharpens a slowly decaying spectrum. */
  powerIterations?: number;
  seed?: number;
  /** Gaussian probes for the spectral error bound (default 6; 0 skips it). */
  probes?: number;
}

export interface RandomizedSvd {
  /** m×k */
  u: Matrix64;
  /** The l = k + oversample singular values of Qᵀ·A (each ≤ the true one), descending. */
  s: Float64Array;
  /** k×n */
  vt: Matrix64;
  residualFrobenius: number;
  spectralErrorBound?: number;
  /** ‖A‖_F, for relative figures. */
  frobenius: number;
}

export function randomizedSvd(a: Matrix, k: number, opts: RandomizedSvdOptions = {}): RandomizedSvd {
  const { rows: m, cols: n } = a;
  const p = Math.min(m, n);
  if (!Number.isInteger(k) || k < 1 || k > p) throw new RangeError(`randomizedSvd: rank ${k} outside 1..${p}`);
  const l = Math.min(p, k + (opts.oversample ?? 10));
  const q = opts.powerIterations ?? 2;
  const rng = new SeededRng(opts.seed ?? 0x5eed);

  const omega = gaussian(rng, l, n); // l×n, i.e. Ω (n×l) stored by columns
  let qcols = orthonormalColumns(matmulABt(a, omega)); // m×l column-major
  const zt = new Float64Array(l * n);
  for (let it = 0; it < q; it++) {
    projectRows(a, qcols, l, zt); // Zᵀ = Qᵀ·A
    const zq = orthonormalColumnsFromColMajor(zt, n, l); // n×l column-major = l×n rows
    qcols = orthonormalColumns(matmulABt(a, { rows: l, cols: n, data: zq }));
  }
  projectRows(a, qcols, l, zt); // B = Qᵀ·A, l×n
  const small = svd({ rows: l, cols: n, data: zt });

  // U = Q·U_B[:, :k]
  const u = new Float64Array(m * k);
  const ub = small.u.data;
  for (let i = 0; i < m; i++) {
    for (let c = 0; c < k; c++) {
      let s = 0;
      for (let j = 0; j < l; j++) s += (qcols[j * m + i] as number) * (ub[j * l + c] as number);
      u[i * k + c] = s;
    }
  }
  const vt = small.vt.data.slice(0, k * n);

  const A = a.data;
  let fro2 = 0;
  for (let i = 0; i < A.length; i++) {
    const v = A[i] as number;
    fro2 += v * v;
  }
  let kept = 0;
  for (let i = 0; i < k; i++) kept += (small.s[i] as number) ** 2;
  const result: RandomizedSvd = {
    u: { rows: m, cols: k, data: u },
    s: small.s,
    vt: { rows: k, cols: n, data: vt },
    residualFrobenius: Math.sqrt(Math.max(0, fro2 - kept)),
    frobenius: Math.sqrt(fro2),
  };
  const probes = opts.probes ?? 6;
  if (probes > 0) result.spectralErrorBound = spectralBound(a, u, m, k, gaussian(rng, probes, n));
  return result;
}

function gaussian(rng: SeededRng, rows: number, cols: number): Matrix64 {
  const d = new Float64Array(rows * cols);
  for (let i = 0; i < d.length; i++) d[i] = rng.normal();
  return { rows, cols, data: d };
}

/** Orthonormal basis (column-major) of the columns of a row-major m×l matrix. */
function orthonormalColumns(y: Matrix64): Float64Array {
  const { rows: m, cols: l } = y;
  const cm = new Float64Array(m * l);
  for (let i = 0; i < m; i++) for (let c = 0; c < l; c++) cm[c * m + i] = y.data[i * l + c] as number;
  return orthonormalColumnsFromColMajor(cm, m, l);
}

function orthonormalColumnsFromColMajor(cm: Float64Array, m: number, l: number): Float64Array {
  return thinQColumns(householderQr(cm.slice(), m, l));
}

/** out (l×n) = Qᵀ·A for Q given as l column-major columns of length m. */
function projectRows(a: Matrix, qcols: Float64Array, l: number, out: Float64Array): void {
  const m = a.rows;
  const qrow = new Float64Array(m * l); // Q row-major for the rank-one-update kernel
  for (let c = 0; c < l; c++) for (let i = 0; i < m; i++) qrow[i * l + c] = qcols[c * m + i] as number;
  out.fill(0);
  atbTransposedInto(a.data, qrow, out, m, a.cols, l);
}

/** 10·√(2/π)·max_i ‖(I − UUᵀ)·A·ω_i‖ over the probe rows ω_i. */
function spectralBound(a: Matrix, u: Float64Array, m: number, k: number, probes: Matrix64): number {
  const y = matmulABt(a, probes); // m×r
  const r = probes.rows;
  let worst = 0;
  for (let c = 0; c < r; c++) {
    const coef = new Float64Array(k);
    for (let i = 0; i < m; i++) {
      const yi = y.data[i * r + c] as number;
      for (let j = 0; j < k; j++) coef[j] = (coef[j] as number) + (u[i * k + j] as number) * yi;
    }
    let res = 0;
    for (let i = 0; i < m; i++) {
      let v = y.data[i * r + c] as number;
      for (let j = 0; j < k; j++) v -= (u[i * k + j] as number) * (coef[j] as number);
      res += v * v;
    }
    worst = Math.max(worst, Math.sqrt(res));
  }
  return 10 * Math.sqrt(2 / Math.PI) * worst;
}
