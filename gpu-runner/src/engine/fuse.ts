/**
 * Fusing LoRA terms into a weight with the native kernels when the addon is built: the same
 * W' = W + Σ scale·B A as shared's fuseModule (which accumulates each row in float64 in
 * TypeScript), here in float32 on every core, several times faster on large modules. DoRA terms
 * (a row norm of the fused row) and a missing addon fall back to fuseModule.
 */
import { checkShapes, type DeltaTerm, fuseModule } from '@lora-edge/shared';
import { loadNativeAddon } from '../backend/native.ts';

export type Fuse = (W: Float32Array, out: number, inF: number, terms: readonly DeltaTerm[]) => Float32Array;

export const fuseModuleNative: Fuse = (W, out, inF, terms) => {
  const { addon } = loadNativeAddon();
  if (!addon || terms.some((t) => t.magnitude)) return fuseModule(W, out, inF, terms);
  checkShapes(W, out, inF, terms);
  // The first term reads W and writes the result in one pass (copying first costs more than the fuse).
  const result = new Float32Array(W.length);
  if (terms.length === 0) result.set(W);
  for (const [n, t] of terms.entries()) {
    const b = new Float32Array(t.B.length);
    for (let i = 0; i < b.length; i++) b[i] = t.scale * (t.B[i] as number);
    addon.fuseRows(result, out, inF, b, t.A, t.r, n === 0 ? W : undefined);
  }
  return result;
};
