/**
 * Dense row-major matrices with explicit shape. float32 for what is stored (adapter factors,
 * ΔW), float64 for what is computed (QR, SVD): every decomposition accumulates in float64.
 */
export type FloatArray = Float32Array | Float64Array;

export interface Matrix<T extends FloatArray = FloatArray> {
  rows: number;
  cols: number;
  /** Row-major: element (i, j) at i * cols + j. */
  data: T;
}

export type Matrix64 = Matrix<Float64Array>;
export type Matrix32 = Matrix<Float32Array>;

export function matrix<T extends FloatArray>(rows: number, cols: number, data: T): Matrix<T> {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0) {
    throw new RangeError(`bad matrix shape ${rows}×${cols}`);
  }
  if (data.length !== rows * cols) throw new RangeError(`a ${rows}×${cols} matrix needs ${rows * cols} values, got ${data.length}`);
  return { rows, cols, data };
}

export function zeros(rows: number, cols: number): Matrix64 {
  return { rows, cols, data: new Float64Array(rows * cols) };
}

export function identity(n: number): Matrix64 {
  const m = zeros(n, n);
  for (let i = 0; i < n; i++) m.data[i * n + i] = 1;
  return m;
}

export function toFloat64(a: Matrix): Matrix64 {
  return { rows: a.rows, cols: a.cols, data: Float64Array.from(a.data) };
}

/** Blocked transpose: tiles keep both the reads and the writes within cache lines. */
export function transpose(a: Matrix): Matrix64 {
  const { rows, cols, data } = a;
  const out = new Float64Array(rows * cols);
  const T = 32;
  for (let i0 = 0; i0 < rows; i0 += T) {
    const i1 = Math.min(rows, i0 + T);
    for (let j0 = 0; j0 < cols; j0 += T) {
      const j1 = Math.min(cols, j0 + T);
      for (let i = i0; i < i1; i++) {
        const row = i * cols;
        for (let j = j0; j < j1; j++) out[j * rows + i] = data[row + j] as number;
      }
    }
  }
  return { rows: cols, cols: rows, data: out };
}

/** Frobenius norm, accumulated in float64 with scaling-free summation (inputs are finite f32/f64). */
export function frobeniusNorm(a: Matrix | FloatArray): number {
  const d = 'data' in a ? a.data : a;
  let s = 0;
  for (let i = 0; i < d.length; i++) {
    const v = d[i] as number;
    s += v * v;
  }
  return Math.sqrt(s);
}
