/**
 * ΔW_i = (B_i·A_i)·s as PEFT's get_delta_weight forms it: a float32 out×in matrix. Only the
 * methods that work elementwise on ΔW (ties_svd & co) pay for this.
 */
import { addRowDelta } from '../lora/fuse.ts';

/** out×in float32 of round32(round32(B·A)·scale); B is out×r, A is r×in, row-major. */
export function deltaWeight(a: Float32Array, b: Float32Array, r: number, out: number, inF: number, scale: number): Float32Array {
  const d = new Float32Array(out * inF);
  const row = new Float64Array(inF);
  const s = Math.fround(scale);
  const term = { A: a, B: b, r, scale: 1 };
  for (let i = 0; i < out; i++) {
    row.fill(0);
    addRowDelta(row, term, i, inF, 1);
    const di = i * inF;
    // Two roundings, as torch: the float32 matmul result, then its product with the scaling.
    for (let j = 0; j < inF; j++) d[di + j] = Math.fround(Math.fround(row[j] as number) * s);
  }
  return d;
}
