/**
 * Matrix products, blocked for cache, accumulating in float64. Three orientations so callers
 * never materialise a transpose of a large operand:
 *   matmul      C = A·B     (m×k · k×n)
 *   matmulABt   C = A·Bᵀ    (m×k · n×k): row-by-row dot products, the fast form when B is narrow
 *   matmulAtB   C = Aᵀ·B    (k×m · k×n): rank-one updates over the shared k rows
 */
import type { FloatArray, Matrix, Matrix64 } from './matrix.ts';

const KB = 256; // k-block: a 256-long slice of a row stays in L1 across the inner loops

function check(cond: boolean, what: string): void {
  if (!cond) throw new RangeError(`matmul: ${what}`);
}

export function matmul(a: Matrix, b: Matrix): Matrix64 {
  check(a.cols === b.rows, `inner dimensions ${a.rows}×${a.cols} · ${b.rows}×${b.cols}`);
  const m = a.rows;
  const k = a.cols;
  const n = b.cols;
  const c = new Float64Array(m * n);
  const A = a.data;
  const B = b.data;
  const NB = 512; // j-block: keeps the C row segment and B row segments hot
  for (let j0 = 0; j0 < n; j0 += NB) {
    const j1 = Math.min(n, j0 + NB);
    for (let k0 = 0; k0 < k; k0 += KB) {
      const k1 = Math.min(k, k0 + KB);
      for (let i = 0; i < m; i++) {
        const ci = i * n;
        const ai = i * k;
        for (let p = k0; p < k1; p++) {
          const av = A[ai + p] as number;
          if (av === 0) continue;
          const bp = p * n;
          for (let j = j0; j < j1; j++) c[ci + j] = (c[ci + j] as number) + av * (B[bp + j] as number);
        }
      }
    }
  }
  return { rows: m, cols: n, data: c };
}

export function matmulABt(a: Matrix, b: Matrix): Matrix64 {
  check(a.cols === b.cols, `A·Bᵀ needs equal column counts, got ${a.rows}×${a.cols} and ${b.rows}×${b.cols}`);
  const m = a.rows;
  const k = a.cols;
  const n = b.rows;
  const c = new Float64Array(m * n);
  abtInto(a.data, b.data, c, m, k, n);
  return { rows: m, cols: n, data: c };
}

/**
 * C (m×n) += A (m×k) · Bᵀ (B is n×k). Register tile of 4 rows of A × 2 rows of B: 6 loads feed
 * 8 multiply-adds; a 256-long k-slice of the B rows stays in L1 across the rows of A.
 */
function abtInto(A: FloatArray, B: FloatArray, c: Float64Array, m: number, k: number, n: number): void {
  for (let k0 = 0; k0 < k; k0 += KB) {
    const k1 = Math.min(k, k0 + KB);
    let i = 0;
    for (; i + 4 <= m; i += 4) {
      const a0 = i * k;
      const a1 = a0 + k;
      const a2 = a1 + k;
      const a3 = a2 + k;
      let j = 0;
      for (; j + 2 <= n; j += 2) {
        const b0 = j * k;
        const b1 = b0 + k;
        let s00 = 0;
        let s01 = 0;
        let s10 = 0;
        let s11 = 0;
        let s20 = 0;
        let s21 = 0;
        let s30 = 0;
        let s31 = 0;
        for (let p = k0; p < k1; p++) {
          const x0 = B[b0 + p] as number;
          const x1 = B[b1 + p] as number;
          const y0 = A[a0 + p] as number;
          const y1 = A[a1 + p] as number;
          const y2 = A[a2 + p] as number;
          const y3 = A[a3 + p] as number;
          s00 += y0 * x0;
          s01 += y0 * x1;
          s10 += y1 * x0;
          s11 += y1 * x1;
          s20 += y2 * x0;
          s21 += y2 * x1;
          s30 += y3 * x0;
          s31 += y3 * x1;
        }
        const c0 = i * n + j;
        c[c0] = (c[c0] as number) + s00;
        c[c0 + 1] = (c[c0 + 1] as number) + s01;
        c[c0 + n] = (c[c0 + n] as number) + s10;
        c[c0 + n + 1] = (c[c0 + n + 1] as number) + s11;
        c[c0 + 2 * n] = (c[c0 + 2 * n] as number) + s20;
        c[c0 + 2 * n + 1] = (c[c0 + 2 * n + 1] as number) + s21;
        c[c0 + 3 * n] = (c[c0 + 3 * n] as number) + s30;
        c[c0 + 3 * n + 1] = (c[c0 + 3 * n + 1] as number) + s31;
      }
      for (; j < n; j++) {
        const bj = j * k;
        let s0 = 0;
        let s1 = 0;
        let s2 = 0;
        let s3 = 0;
        for (let p = k0; p < k1; p++) {
          const bv = B[bj + p] as number;
          s0 += (A[a0 + p] as number) * bv;
          s1 += (A[a1 + p] as number) * bv;
          s2 += (A[a2 + p] as number) * bv;
          s3 += (A[a3 + p] as number) * bv;
        }
        c[i * n + j] = (c[i * n + j] as number) + s0;
        c[(i + 1) * n + j] = (c[(i + 1) * n + j] as number) + s1;
        c[(i + 2) * n + j] = (c[(i + 2) * n + j] as number) + s2;
        c[(i + 3) * n + j] = (c[(i + 3) * n + j] as number) + s3;
      }
    }
    for (; i < m; i++) {
      const ai = i * k;
      for (let j = 0; j < n; j++) {
        const bj = j * k;
        let s = 0;
        for (let p = k0; p < k1; p++) s += (A[ai + p] as number) * (B[bj + p] as number);
        c[i * n + j] = (c[i * n + j] as number) + s;
      }
    }
  }
}

export function matmulAtB(a: Matrix, b: Matrix): Matrix64 {
  check(a.rows === b.rows, `Aᵀ·B needs equal row counts, got ${a.rows}×${a.cols} and ${b.rows}×${b.cols}`);
  const k = a.rows;
  const m = a.cols;
  const n = b.cols;
  if (n < m) {
    // Narrow result: build Cᵀ = Bᵀ·A with long contiguous axpys over A's rows, then transpose.
    const ct = new Float64Array(n * m);
    atbTransposedInto(a.data, b.data, ct, k, m, n);
    const c = new Float64Array(m * n);
    for (let j = 0; j < n; j++) for (let i = 0; i < m; i++) c[i * n + j] = ct[j * m + i] as number;
    return { rows: m, cols: n, data: c };
  }
  const c = new Float64Array(m * n);
  const A = a.data;
  const B = b.data;
  for (let p = 0; p < k; p++) {
    const ap = p * m;
    const bp = p * n;
    for (let i = 0; i < m; i++) {
      const av = A[ap + i] as number;
      if (av === 0) continue;
      const ci = i * n;
      for (let j = 0; j < n; j++) c[ci + j] = (c[ci + j] as number) + av * (B[bp + j] as number);
    }
  }
  return { rows: m, cols: n, data: c };
}

/**
 * Cᵀ (n×m) += Bᵀ·A for A k×m, B k×n: Cᵀ[j,:] += Σ_p B[p,j]·A[p,:]. Four rows of A per update of
 * a Cᵀ row (a quarter of the read-modify-write traffic on Cᵀ), blocked over m so the four
 * A-row slices stay in L1 and the Cᵀ panel in L2 while A streams through once.
 */
export function atbTransposedInto(A: FloatArray, B: FloatArray, ct: Float64Array, k: number, m: number, n: number): void {
  const MB = 1024;
  for (let i0 = 0; i0 < m; i0 += MB) {
    const i1 = Math.min(m, i0 + MB);
    let p = 0;
    for (; p + 4 <= k; p += 4) {
      const a0 = p * m;
      const a1 = a0 + m;
      const a2 = a1 + m;
      const a3 = a2 + m;
      const bp = p * n;
      for (let j = 0; j < n; j++) {
        const b0 = B[bp + j] as number;
        const b1 = B[bp + n + j] as number;
        const b2 = B[bp + 2 * n + j] as number;
        const b3 = B[bp + 3 * n + j] as number;
        const cj = j * m;
        for (let i = i0; i < i1; i++) {
          ct[cj + i] =
            (ct[cj + i] as number) +
            b0 * (A[a0 + i] as number) +
            b1 * (A[a1 + i] as number) +
            b2 * (A[a2 + i] as number) +
            b3 * (A[a3 + i] as number);
        }
      }
    }
    for (; p < k; p++) {
      const ap = p * m;
      const bp = p * n;
      for (let j = 0; j < n; j++) {
        const bv = B[bp + j] as number;
        const cj = j * m;
        for (let i = i0; i < i1; i++) ct[cj + i] = (ct[cj + i] as number) + bv * (A[ap + i] as number);
      }
    }
  }
}
