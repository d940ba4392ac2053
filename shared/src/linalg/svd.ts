/**
 * Thin SVD, A = U·diag(s)·Vᵀ, by one-sided (Hestenes) Jacobi in float64.
 * Chosen for accuracy over speed: it computes even small singular values to high relative
 * accuracy, and it needs no bidiagonal QR iteration. A tall matrix is first reduced by QR so the
 * rotations work on the n×n triangle; a wide one is handled through its transpose.
 * Cost ~ 5·n³ per sweep, 6–10 sweeps: fine up to a few hundred columns (see EXACT_SVD_MAX_DIM
 * in merge/svd-path.ts for where the merges switch to the randomized SVD).
 */
import { type Matrix, type Matrix64, transpose } from './matrix.ts';
import { applyQ, fromColumnMajor, householderQr, toColumnMajor } from './qr.ts';

export interface Svd {
  /** m×k, orthonormal columns (k = p = min(m, n) unless `rank` asked for fewer). */
  u: Matrix64;
  /** All p = min(m, n) singular values, descending. */
  s: Float64Array;
  /** k×n, orthonormal rows. */
  vt: Matrix64;
}

export interface SvdOptions {
  /** Cap on Jacobi sweeps (each sweep visits every column pair once). */
  maxSweeps?: number;
  /** Build only the leading `rank` singular vectors (the values are always all computed). */
  rank?: number;
}

export function svd(a: Matrix, opts: SvdOptions = {}): Svd {
  const { rows: m, cols: n } = a;
  if (m < n) {
    // Aᵀ = V S Uᵀ: decompose the transpose, whose column-major form is A's row-major data.
    const t = svdTall(Float64Array.from(a.data), n, m, opts);
    return { u: transpose(t.vt), s: t.s, vt: transpose(t.u) };
  }
  return svdTall(toColumnMajor(a), m, n, opts);
}

/** SVD of a column-major m×n matrix with m ≥ n (the array is consumed). */
function svdTall(cols: Float64Array, m: number, n: number, opts: SvdOptions): Svd {
  const kk = Math.max(0, Math.min(opts.rank ?? n, n));
  if (n === 0)
    return {
      u: { rows: m, cols: 0, data: new Float64Array(0) },
      s: new Float64Array(0),
      vt: { rows: 0, cols: 0, data: new Float64Array(0) },
    };
  // QR first when tall: the rotations then act on n-long columns instead of m-long ones.
  const useQr = m > n;
  let g = cols;
  let h: ReturnType<typeof householderQr> | undefined;
  if (useQr) {
    h = householderQr(cols, m, n);
    g = new Float64Array(n * n);
    for (let c = 0; c < n; c++) for (let i = 0; i <= c; i++) g[c * n + i] = h.packed[c * m + i] as number;
  }
  const len = useQr ? n : m;
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  jacobi(g, len, v, n, opts.maxSweeps ?? 60);

  const norms = new Float64Array(n);
  for (let c = 0; c < n; c++) norms[c] = Math.sqrt(dot(g, c * len, g, c * len, len));
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => (norms[y] as number) - (norms[x] as number));

  const s = new Float64Array(n);
  const uc = new Float64Array(len * n);
  const vt = new Float64Array(n * n);
  const smax = norms[order[0] as number] as number;
  // Below this a column is rounding noise and its direction is meaningless: complete U instead.
  const tiny = smax * Number.EPSILON * len;
  const deficient: number[] = [];
  for (let k = 0; k < n; k++) {
    const c = order[k] as number;
    const sv = norms[c] as number;
    s[k] = sv;
    for (let i = 0; i < n; i++) vt[k * n + i] = v[c * n + i] as number;
    if (sv > tiny) {
      const inv = 1 / sv;
      for (let i = 0; i < len; i++) uc[k * len + i] = (g[c * len + i] as number) * inv;
    } else deficient.push(k);
  }
  completeOrthonormal(uc, len, n, deficient);

  let ucols = uc.subarray(0, kk * len);
  if (h) {
    // U = Q·[U_R; 0], applied through the reflectors, for the wanted columns only.
    ucols = new Float64Array(m * kk);
    for (let c = 0; c < kk; c++) ucols.set(uc.subarray(c * n, c * n + n), c * m);
    applyQ(h, ucols, kk, false);
  }
  return { u: fromColumnMajor(ucols, m, kk), s, vt: { rows: kk, cols: n, data: vt.slice(0, kk * n) } };
}

function dot(x: Float64Array, xo: number, y: Float64Array, yo: number, len: number): number {
  let s = 0;
  for (let i = 0; i < len; i++) s += (x[xo + i] as number) * (y[yo + i] as number);
  return s;
}

/**
 * Rotates column pairs of g (n columns of length len) until all are mutually orthogonal to
 * working precision, applying the same rotations to v.
 */
function jacobi(g: Float64Array, len: number, v: Float64Array, n: number, maxSweeps: number): void {
  const tol = Number.EPSILON * Math.max(len, 8);
  const nrm = new Float64Array(n);
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    // Fresh norms every sweep: the running updates below drift slowly.
    for (let c = 0; c < n; c++) nrm[c] = dot(g, c * len, g, c * len, len);
    let rotated = 0;
    for (let i = 0; i < n - 1; i++) {
      const gi = i * len;
      for (let j = i + 1; j < n; j++) {
        const alpha = nrm[i] as number;
        const beta = nrm[j] as number;
        if (alpha === 0 || beta === 0) continue;
        const gj = j * len;
        const gamma = dot(g, gi, g, gj, len);
        if (Math.abs(gamma) <= tol * Math.sqrt(alpha * beta)) continue;
        rotated++;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let k = 0; k < len; k++) {
          const x = g[gi + k] as number;
          const y = g[gj + k] as number;
          g[gi + k] = c * x - s * y;
          g[gj + k] = s * x + c * y;
        }
        const vi = i * n;
        const vj = j * n;
        for (let k = 0; k < n; k++) {
          const x = v[vi + k] as number;
          const y = v[vj + k] as number;
          v[vi + k] = c * x - s * y;
          v[vj + k] = s * x + c * y;
        }
        nrm[i] = alpha - t * gamma;
        nrm[j] = beta + t * gamma;
      }
    }
    if (rotated === 0) return;
  }
}

/**
 * Fills the listed columns of u (column-major, `len` rows) with unit vectors orthogonal to all
 * other columns: the singular vectors of zero singular values are any orthonormal completion.
 */
export function completeOrthonormal(u: Float64Array, len: number, ncols: number, missing: number[]): void {
  if (missing.length === 0) return;
  const isMissing = new Uint8Array(ncols);
  for (const k of missing) isMissing[k] = 1;
  const done: number[] = [];
  for (let k = 0; k < ncols; k++) if (!isMissing[k]) done.push(k);
  const w = new Float64Array(len);
  // Some unit vector keeps at least this much after projection (an averaging argument over all
  // e_i, counting those already skipped), so the scan below always finds one.
  const keep = 0.5 / Math.sqrt(len);
  let e = 0;
  for (const k of missing) {
    for (; e < len; e++) {
      w.fill(0);
      w[e] = 1;
      // Two passes of Gram–Schmidt: one is not enough to reach working-precision orthogonality.
      for (let pass = 0; pass < 2; pass++) {
        for (const d of done) {
          const proj = dot(w, 0, u, d * len, len);
          for (let i = 0; i < len; i++) w[i] = (w[i] as number) - proj * (u[d * len + i] as number);
        }
      }
      const nw = Math.sqrt(dot(w, 0, w, 0, len));
      if (nw > keep) {
        for (let i = 0; i < len; i++) u[k * len + i] = (w[i] as number) / nw;
        done.push(k);
        e++;
        break;
      }
    }
  }
}
