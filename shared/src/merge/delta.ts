/**
 * ΔW_i = (B_i·A_i)·s as PEFT's get_delta_weight forms it: a float32 out×in matrix. Only the
 * methods that work elementwise on ΔW (ties_svd & co) pay for this.
 */

/** out×in float32 of round32(round32(B·A)·scale); B is out×r, A is r×in, row-major. */
export function deltaWeight(a: Float32Array, b: Float32Array, r: number, out: number, inF: number, scale: number): Float32Array {
  const d = new Float32Array(out * inF);
  const row = new Float64Array(inF);
  const s = Math.fround(scale);
  for (let i = 0; i < out; i++) {
    row.fill(0);
    const bi = i * r;
    let k = 0;
    // Four rank-one rows per sweep of `row`: a quarter of the load/store traffic on it.
    for (; k + 4 <= r; k += 4) {
      const b0 = b[bi + k] as number;
      const b1 = b[bi + k + 1] as number;
      const b2 = b[bi + k + 2] as number;
      const b3 = b[bi + k + 3] as number;
      const a0 = k * inF;
      const a1 = a0 + inF;
      const a2 = a1 + inF;
      const a3 = a2 + inF;
      for (let j = 0; j < inF; j++) {
        row[j] =
          (row[j] as number) +
          b0 * (a[a0 + j] as number) +
          b1 * (a[a1 + j] as number) +
          b2 * (a[a2 + j] as number) +
          b3 * (a[a3 + j] as number);
      }
    }
    for (; k < r; k++) {
      const bv = b[bi + k] as number;
      const ak = k * inF;
      for (let j = 0; j < inF; j++) row[j] = (row[j] as number) + bv * (a[ak + j] as number);
    }
    const di = i * inF;
    // Two roundings, as torch: the float32 matmul result, then its product with the scaling.
    for (let j = 0; j < inF; j++) d[di + j] = Math.fround(Math.fround(row[j] as number) * s);
  }
  return d;
}
