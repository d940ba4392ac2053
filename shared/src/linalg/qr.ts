/**
 * Householder QR in float64. The core works on column-major storage (each column contiguous),
 * because every reflector touches whole columns; `qr()` wraps it for row-major matrices.
 * A = Q·R with Q = H_0·H_1·…·H_{p-1}, H_j = I − τ_j v_j v_jᵀ, p = min(m, n).
 */
import type { Matrix, Matrix64 } from './matrix.ts';

export interface HouseholderQr {
  m: number;
  n: number;
  p: number;
  /** Column-major m×n: R on and above the diagonal, the reflectors' tails (v_j[0] = 1 implied) below. */
  packed: Float64Array;
  tau: Float64Array;
}

/** Factors the column-major m×n matrix `cols` in place (it becomes `packed`). */
export function householderQr(cols: Float64Array, m: number, n: number): HouseholderQr {
  if (cols.length !== m * n) throw new RangeError(`householderQr: ${cols.length} values for ${m}×${n}`);
  const p = Math.min(m, n);
  const tau = new Float64Array(p);
  for (let j = 0; j < p; j++) {
    const cj = j * m;
    let tail2 = 0;
    for (let i = j + 1; i < m; i++) {
      const v = cols[cj + i] as number;
      tail2 += v * v;
    }
    if (tail2 === 0) {
      tau[j] = 0; // already zero below the diagonal: H_j = I
      continue;
    }
    const x0 = cols[cj + j] as number;
    const norm2 = tail2 + x0 * x0;
    const alpha = Math.sqrt(norm2);
    // beta takes the opposite sign of x0 so x0 − beta never cancels.
    const beta = x0 >= 0 ? -alpha : alpha;
    const v0 = x0 - beta;
    const inv = 1 / v0;
    for (let i = j + 1; i < m; i++) cols[cj + i] = (cols[cj + i] as number) * inv;
    const t = (beta - x0) / beta;
    tau[j] = t;
    cols[cj + j] = beta;
    for (let c = j + 1; c < n; c++) reflect(cols, cj, c * m, j, m, t);
  }
  return { m, n, p, packed: cols, tau };
}

/** x[j:] −= τ·(vᵀx[j:])·v for the reflector stored in column `vOff` (v[j] = 1 implied). */
function reflect(store: Float64Array, vOff: number, xOff: number, j: number, m: number, t: number, x: Float64Array = store): void {
  if (t === 0) return;
  let w = x[xOff + j] as number;
  for (let i = j + 1; i < m; i++) w += (store[vOff + i] as number) * (x[xOff + i] as number);
  w *= t;
  if (w === 0) return;
  x[xOff + j] = (x[xOff + j] as number) - w;
  for (let i = j + 1; i < m; i++) x[xOff + i] = (x[xOff + i] as number) - w * (store[vOff + i] as number);
}

/** R as a row-major p×n matrix. */
export function qrR(h: HouseholderQr): Matrix64 {
  const { m, n, p, packed } = h;
  const r = new Float64Array(p * n);
  for (let c = 0; c < n; c++) {
    const top = Math.min(c, p - 1);
    for (let i = 0; i <= top; i++) r[i * n + c] = packed[c * m + i] as number;
  }
  return { rows: p, cols: n, data: r };
}

/**
 * Applies Q (or Qᵀ) to k column-major vectors of length m, in place. Q·x runs the reflectors
 * last to first, Qᵀ·x first to last.
 */
export function applyQ(h: HouseholderQr, x: Float64Array, k: number, transpose = false): void {
  const { m, p, packed, tau } = h;
  if (x.length !== m * k) throw new RangeError(`applyQ: ${x.length} values for ${k} columns of ${m}`);
  for (let c = 0; c < k; c++) {
    const off = c * m;
    if (transpose) for (let j = 0; j < p; j++) reflect(packed, j * m, off, j, m, tau[j] as number, x);
    else for (let j = p - 1; j >= 0; j--) reflect(packed, j * m, off, j, m, tau[j] as number, x);
  }
}

/**
 * Q·[Y; 0] for a small p×k row-major Y: the first k columns of the thin Q times Y, returned
 * column-major (k columns of length m). Never forms Q itself.
 */
export function qTimesSmall(h: HouseholderQr, y: Matrix): Float64Array {
  const { m, p } = h;
  if (y.rows !== p) throw new RangeError(`qTimesSmall: Y has ${y.rows} rows, Q has ${p} columns`);
  const k = y.cols;
  const x = new Float64Array(m * k);
  for (let c = 0; c < k; c++) for (let i = 0; i < p; i++) x[c * m + i] = y.data[i * k + c] as number;
  applyQ(h, x, k, false);
  return x;
}

/** The thin Q (m×p) column-major. */
export function thinQColumns(h: HouseholderQr): Float64Array {
  const { m, p } = h;
  const x = new Float64Array(m * p);
  for (let c = 0; c < p; c++) x[c * m + c] = 1;
  applyQ(h, x, p, false);
  return x;
}

/** Column-major storage of a row-major matrix (a transpose copy into float64). */
export function toColumnMajor(a: Matrix): Float64Array {
  const { rows, cols, data } = a;
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const ri = i * cols;
    for (let j = 0; j < cols; j++) out[j * rows + i] = data[ri + j] as number;
  }
  return out;
}

/** Row-major m×k matrix from k column-major columns of length m. */
export function fromColumnMajor(cols: Float64Array, m: number, k: number): Matrix64 {
  const out = new Float64Array(m * k);
  for (let c = 0; c < k; c++) {
    const off = c * m;
    for (let i = 0; i < m; i++) out[i * k + c] = cols[off + i] as number;
  }
  return { rows: m, cols: k, data: out };
}

/** Thin QR of a row-major matrix: Q m×p with orthonormal columns, R p×n upper triangular. */
export function qr(a: Matrix): { q: Matrix64; r: Matrix64 } {
  const h = householderQr(toColumnMajor(a), a.rows, a.cols);
  return { q: fromColumnMajor(thinQColumns(h), a.rows, h.p), r: qrR(h) };
}
