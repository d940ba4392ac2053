import { describe, expect, it } from 'vitest';
import {
  frobeniusNorm,
  lowRankSvd,
  type Matrix,
  type Matrix64,
  matmul,
  matmulABt,
  matmulAtB,
  qr,
  randomizedSvd,
  SeededRng,
  svd,
  transpose,
} from './index.ts';

// ---- independent reference helpers (naive loops, classical Gram–Schmidt) ----

function randn(rng: SeededRng, rows: number, cols: number): Matrix64 {
  const d = new Float64Array(rows * cols);
  for (let i = 0; i < d.length; i++) d[i] = rng.normal();
  return { rows, cols, data: d };
}

function naiveMul(a: Matrix, b: Matrix): Matrix64 {
  const out = new Float64Array(a.rows * b.cols);
  for (let i = 0; i < a.rows; i++)
    for (let j = 0; j < b.cols; j++) {
      let s = 0;
      for (let p = 0; p < a.cols; p++) s += (a.data[i * a.cols + p] as number) * (b.data[p * b.cols + j] as number);
      out[i * b.cols + j] = s;
    }
  return { rows: a.rows, cols: b.cols, data: out };
}

function naiveT(a: Matrix): Matrix64 {
  const out = new Float64Array(a.rows * a.cols);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) out[j * a.rows + i] = a.data[i * a.cols + j] as number;
  return { rows: a.cols, cols: a.rows, data: out };
}

/** A random matrix with orthonormal columns (modified Gram–Schmidt, twice). */
function randomOrthonormal(rng: SeededRng, m: number, k: number): Matrix64 {
  const q = randn(rng, m, k);
  for (let pass = 0; pass < 2; pass++)
    for (let j = 0; j < k; j++) {
      for (let p = 0; p < j; p++) {
        let d = 0;
        for (let i = 0; i < m; i++) d += (q.data[i * k + j] as number) * (q.data[i * k + p] as number);
        for (let i = 0; i < m; i++) q.data[i * k + j] = (q.data[i * k + j] as number) - d * (q.data[i * k + p] as number);
      }
      let n = 0;
      for (let i = 0; i < m; i++) n += (q.data[i * k + j] as number) ** 2;
      n = Math.sqrt(n);
      for (let i = 0; i < m; i++) q.data[i * k + j] = (q.data[i * k + j] as number) / n;
    }
  return q;
}

/** U·diag(s)·Vᵀ with random orthonormal U (m×k), V (n×k). */
function withSpectrum(rng: SeededRng, m: number, n: number, s: number[]): Matrix64 {
  const k = s.length;
  const u = randomOrthonormal(rng, m, k);
  const v = randomOrthonormal(rng, n, k);
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) u.data[i * k + j] = (u.data[i * k + j] as number) * (s[j] as number);
  return naiveMul(u, naiveT(v));
}

function maxAbs(a: Matrix | Float64Array): number {
  const d = 'data' in a ? a.data : a;
  let m = 0;
  for (let i = 0; i < d.length; i++) m = Math.max(m, Math.abs(d[i] as number));
  return m;
}

function maxDiff(a: Matrix, b: Matrix): number {
  expect([a.rows, a.cols]).toEqual([b.rows, b.cols]);
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs((a.data[i] as number) - (b.data[i] as number)));
  return m;
}

/** max |QᵀQ − I| for the columns of q. */
function orthError(q: Matrix): number {
  const g = naiveMul(naiveT(q), q);
  let e = 0;
  for (let i = 0; i < g.rows; i++)
    for (let j = 0; j < g.cols; j++) e = Math.max(e, Math.abs((g.data[i * g.cols + j] as number) - (i === j ? 1 : 0)));
  return e;
}

function reconstruct(u: Matrix, s: ArrayLike<number>, vt: Matrix): Matrix64 {
  const k = u.cols;
  const us = new Float64Array(u.rows * k);
  for (let i = 0; i < u.rows; i++) for (let j = 0; j < k; j++) us[i * k + j] = (u.data[i * k + j] as number) * (s[j] as number);
  return naiveMul({ rows: u.rows, cols: k, data: us }, vt);
}

const SHAPES: [number, number][] = [
  [1, 1],
  [5, 3],
  [3, 5],
  [40, 40],
  [97, 13],
  [13, 97],
  [300, 70],
];

describe('matmul', () => {
  const rng = new SeededRng(11);
  it.each([
    [1, 1, 1],
    [7, 5, 3],
    [33, 300, 9],
    [130, 17, 260],
    [3, 600, 2],
  ])('A·B, A·Bᵀ, Aᵀ·B match the naive product (%i×%i·%i)', (m, k, n) => {
    const a = randn(rng, m, k);
    const b = randn(rng, k, n);
    const ref = naiveMul(a, b);
    const tol = 1e-12 * Math.sqrt(k) * Math.max(1, maxAbs(ref));
    expect(maxDiff(matmul(a, b), ref)).toBeLessThan(tol);
    expect(maxDiff(matmulABt(a, naiveT(b)), ref)).toBeLessThan(tol);
    expect(maxDiff(matmulAtB(naiveT(a), b), ref)).toBeLessThan(tol);
  });

  it('accepts float32 operands', () => {
    const a = randn(rng, 9, 21);
    const b = randn(rng, 21, 4);
    const a32 = { rows: 9, cols: 21, data: Float32Array.from(a.data) };
    const ref = naiveMul({ ...a, data: Float64Array.from(a32.data) }, b);
    expect(maxDiff(matmul(a32, b), ref)).toBeLessThan(1e-12);
  });

  it('refuses mismatched shapes', () => {
    expect(() => matmul(randn(rng, 2, 3), randn(rng, 2, 3))).toThrow(RangeError);
  });
});

describe('Householder QR', () => {
  const rng = new SeededRng(12);
  it.each(SHAPES)('%i×%i: Q orthonormal, R upper triangular, Q·R = A', (m, n) => {
    const a = randn(rng, m, n);
    const { q, r } = qr(a);
    const p = Math.min(m, n);
    expect([q.rows, q.cols, r.rows, r.cols]).toEqual([m, p, p, n]);
    expect(orthError(q)).toBeLessThan(1e-13);
    for (let i = 0; i < p; i++) for (let j = 0; j < Math.min(i, n); j++) expect(r.data[i * n + j]).toBe(0);
    expect(maxDiff(naiveMul(q, r), a)).toBeLessThan(1e-13 * Math.max(m, n));
  });

  it('handles rank-deficient and zero columns', () => {
    const base = randn(rng, 30, 3);
    const a = naiveMul(base, randn(rng, 3, 8)); // rank 3, 8 columns
    for (let i = 0; i < 30; i++) a.data[i * 8 + 5] = 0;
    const { q, r } = qr(a);
    expect(orthError(q)).toBeLessThan(1e-13);
    expect(maxDiff(naiveMul(q, r), a)).toBeLessThan(1e-12);
  });
});

describe('SVD (one-sided Jacobi)', () => {
  const rng = new SeededRng(13);

  it('a 2×2 by hand: [[3,0],[4,5]] has σ = 3√5, √5', () => {
    const { s } = svd({ rows: 2, cols: 2, data: Float64Array.from([3, 0, 4, 5]) });
    expect(s[0]).toBeCloseTo(3 * Math.sqrt(5), 13);
    expect(s[1]).toBeCloseTo(Math.sqrt(5), 13);
  });

  it.each(SHAPES)('%i×%i random: U, V orthonormal, descending, U·S·Vᵀ = A', (m, n) => {
    const a = randn(rng, m, n);
    const { u, s, vt } = svd(a);
    const p = Math.min(m, n);
    expect([u.rows, u.cols, s.length, vt.rows, vt.cols]).toEqual([m, p, p, p, n]);
    expect(orthError(u)).toBeLessThan(1e-12);
    expect(orthError(naiveT(vt))).toBeLessThan(1e-12);
    for (let i = 1; i < p; i++) expect(s[i] as number).toBeLessThanOrEqual(s[i - 1] as number);
    expect(maxDiff(reconstruct(u, s, vt), a)).toBeLessThan(1e-12 * Math.max(m, n) * (s[0] as number));
  });

  it.each([
    [60, 25],
    [25, 60],
  ])('%i×%i with a known spectrum (incl. tiny values) recovers it to high relative accuracy', (m, n) => {
    const spec = Array.from({ length: 25 }, (_, i) => 10 ** (-i / 4));
    const a = withSpectrum(rng, m, n, spec);
    const { s } = svd(a);
    // High relative accuracy is a Jacobi property for well-scaled matrices; allow the rounding of forming A.
    for (let i = 0; i < spec.length; i++) expect(Math.abs((s[i] as number) - (spec[i] as number))).toBeLessThan(1e-13);
  });

  it.each([
    [50, 20, 4],
    [20, 50, 4],
    [30, 30, 1],
  ])('%i×%i of rank %i: zero tail, still orthonormal U and V', (m, n, r) => {
    const a = naiveMul(randn(rng, m, r), randn(rng, r, n));
    const { u, s, vt } = svd(a);
    expect(s[r - 1] as number).toBeGreaterThan(1e-3);
    for (let i = r; i < s.length; i++) expect(s[i] as number).toBeLessThan(1e-12 * (s[0] as number));
    expect(orthError(u)).toBeLessThan(1e-12);
    expect(orthError(naiveT(vt))).toBeLessThan(1e-12);
    expect(maxDiff(reconstruct(u, s, vt), a)).toBeLessThan(1e-12 * (s[0] as number));
  });

  it('the zero matrix: σ = 0 with orthonormal singular vectors', () => {
    const { u, s, vt } = svd({ rows: 6, cols: 4, data: new Float64Array(24) });
    expect(Array.from(s)).toEqual([0, 0, 0, 0]);
    expect(orthError(u)).toBeLessThan(1e-15);
    expect(orthError(naiveT(vt))).toBeLessThan(1e-15);
  });

  it('rank option builds only the leading vectors', () => {
    const a = randn(rng, 80, 30);
    const full = svd(a);
    const part = svd(a, { rank: 5 });
    expect([part.u.cols, part.vt.rows, part.s.length]).toEqual([5, 5, 30]);
    const k = 5;
    for (let j = 0; j < k; j++) {
      // Same vectors up to sign.
      let d = 0;
      for (let i = 0; i < 80; i++) d += (part.u.data[i * k + j] as number) * (full.u.data[i * 30 + j] as number);
      expect(Math.abs(Math.abs(d) - 1)).toBeLessThan(1e-10);
    }
  });
});

describe('lowRankSvd', () => {
  const rng = new SeededRng(14);
  function terms(out: number, inF: number, ranks: number[], coefs: number[]) {
    return ranks.map((r, i) => ({ a: randn(rng, r, inF), b: randn(rng, out, r), coef: coefs[i] as number }));
  }
  function dense(ts: ReturnType<typeof terms>): Matrix64 {
    const out = ts[0]!.b.rows;
    const inF = ts[0]!.a.cols;
    const d = new Float64Array(out * inF);
    for (const t of ts) {
      const p = naiveMul(t.b, t.a);
      for (let i = 0; i < d.length; i++) d[i] = (d[i] as number) + t.coef * (p.data[i] as number);
    }
    return { rows: out, cols: inF, data: d };
  }

  it.each([
    [120, 80, [4, 4, 4], [0.6, 0.3, -0.2]],
    [40, 200, [8, 2], [1, -1.5]],
    [10, 12, [8, 8], [1, 1]], // Σr = 16 > min(out, in): the QR factors are wide
  ])('%i×%i, ranks %j: same values and product as the SVD of the formed matrix', (out, inF, ranks, coefs) => {
    const ts = terms(out, inF, ranks, coefs);
    const ref = dense(ts);
    const full = svd(ref);
    const lr = lowRankSvd(ts);
    const p = lr.s.length;
    expect(p).toBe(
      Math.min(
        out,
        inF,
        ranks.reduce((x, y) => x + y, 0),
      ),
    );
    const s0 = full.s[0] as number;
    for (let i = 0; i < p; i++) expect(Math.abs((lr.s[i] as number) - (full.s[i] as number))).toBeLessThan(1e-12 * s0);
    for (let i = p; i < full.s.length; i++) expect(full.s[i] as number).toBeLessThan(1e-12 * s0);
    expect(orthError(lr.u)).toBeLessThan(1e-12);
    expect(orthError(naiveT(lr.vt))).toBeLessThan(1e-12);
    expect(maxDiff(reconstruct(lr.u, lr.s, lr.vt), ref)).toBeLessThan(1e-12 * s0);
  });

  it('truncated to rank k gives the best rank-k approximation (Eckart–Young)', () => {
    const ts = terms(70, 50, [6, 6], [1, 0.5]);
    const ref = dense(ts);
    const lr = lowRankSvd(ts, { rank: 3 });
    expect([lr.u.cols, lr.vt.rows]).toEqual([3, 3]);
    const approx = reconstruct(lr.u, lr.s, lr.vt);
    const diff = { rows: 70, cols: 50, data: ref.data.map((v, i) => v - (approx.data[i] as number)) };
    let tail = 0;
    for (let i = 3; i < lr.s.length; i++) tail += (lr.s[i] as number) ** 2;
    expect(frobeniusNorm(diff)).toBeCloseTo(Math.sqrt(tail), 10);
  });

  it('cancelling terms give a rank-deficient product', () => {
    const a = randn(rng, 3, 20);
    const b = randn(rng, 30, 3);
    const lr = lowRankSvd([
      { a, b, coef: 1 },
      { a, b, coef: -1 },
      { a: randn(rng, 2, 20), b: randn(rng, 30, 2), coef: 1 },
    ]);
    expect(lr.s[1] as number).toBeGreaterThan(1e-3);
    for (let i = 2; i < lr.s.length; i++) expect(lr.s[i] as number).toBeLessThan(1e-12 * (lr.s[0] as number));
    expect(orthError(lr.u)).toBeLessThan(1e-12);
  });
});

describe('randomizedSvd', () => {
  const rng = new SeededRng(15);

  it('recovers a low-rank matrix exactly and says so', () => {
    const a = naiveMul(randn(rng, 200, 6), randn(rng, 6, 150));
    const r = randomizedSvd(a, 6);
    const ref = svd(a);
    for (let i = 0; i < 6; i++) expect(Math.abs((r.s[i] as number) - (ref.s[i] as number))).toBeLessThan(1e-10 * (ref.s[0] as number));
    expect(r.residualFrobenius).toBeLessThan(1e-6 * r.frobenius);
    expect(r.spectralErrorBound as number).toBeLessThan(1e-9 * r.frobenius);
  });

  it('on a full-rank matrix with a gap: near-optimal, and the reported errors are true', () => {
    const spec = Array.from({ length: 60 }, (_, i) => (i < 8 ? 100 / (i + 1) : 1 / (1 + 0.1 * i)));
    const a = withSpectrum(rng, 180, 120, spec);
    const k = 8;
    const r = randomizedSvd(a, k, { seed: 3 });
    for (let i = 0; i < k; i++) expect(Math.abs((r.s[i] as number) - (spec[i] as number)) / (spec[i] as number)).toBeLessThan(1e-6);
    const approx = reconstruct(r.u, r.s, r.vt);
    const resid: Matrix64 = { rows: 180, cols: 120, data: a.data.map((v, i) => v - (approx.data[i] as number)) };
    // Frobenius residual is exact; the spectral bound holds (with probability 1 − 1e-6).
    expect(Math.abs(frobeniusNorm(resid) - r.residualFrobenius)).toBeLessThan(1e-9 * r.frobenius);
    const trueSpectral = svd(resid).s[0] as number;
    expect(r.spectralErrorBound as number).toBeGreaterThanOrEqual(trueSpectral);
    // Optimal rank-8 spectral error is σ_9; the randomized one is within a few percent of it.
    expect(trueSpectral).toBeLessThan(1.05 * (spec[k] as number));
  });

  it('float32 input, wide shape', () => {
    const a64 = naiveMul(randn(rng, 40, 5), randn(rng, 5, 300));
    const a: Matrix = { rows: 40, cols: 300, data: Float32Array.from(a64.data) };
    const r = randomizedSvd(a, 5, { probes: 0 });
    expect(r.spectralErrorBound).toBeUndefined();
    expect(orthError(r.u)).toBeLessThan(1e-12);
    expect(orthError(naiveT(r.vt))).toBeLessThan(1e-12);
    expect(r.residualFrobenius).toBeLessThan(1e-6 * r.frobenius);
  });

  it('refuses a rank outside 1..min(m, n)', () => {
    expect(() => randomizedSvd(randn(rng, 5, 4), 5)).toThrow(RangeError);
    expect(() => randomizedSvd(randn(rng, 5, 4), 0)).toThrow(RangeError);
  });
});

describe('transpose', () => {
  it('matches the naive transpose', () => {
    const a = randn(new SeededRng(16), 37, 71);
    expect(maxDiff(transpose(a), naiveT(a))).toBe(0);
  });
});
