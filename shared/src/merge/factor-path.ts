/**
 * The merges PEFT runs on the factors themselves, never on ΔW:
 * - linear / ties / dare_* / magnitude_prune combine the A stack and the B stack separately with
 *   weights √|w·s|·sign(w·s) on A and √|w·s| on B (so Σ B'·A' is not Σ w·s·B·A once there are
 *   two adapters or any pruning); the rank stays r. DARE draws its masks A side first, then B.
 * - cat concatenates A_i·w_i·s_i (rows) and B_i (columns): exactly Σ w_i·s_i·B_i·A_i at rank Σr.
 */
import { type CombineOptions, combineTaskTensors } from './combine.ts';
import type { CombineRule, MergeAdapter } from './types.ts';

const f = Math.fround;

export interface Factors {
  lora_A: Float32Array;
  lora_B: Float32Array;
  rank: number;
}

export function mergeFactorsPeft(adapters: readonly MergeAdapter[], rule: CombineRule, opts: CombineOptions): Factors {
  const wA: number[] = [];
  const wB: number[] = [];
  for (const ad of adapters) {
    // Python float arithmetic (double), then torch.tensor() rounds to float32 in combine.
    const ws = ad.weight * ad.scaling;
    const root = Math.sqrt(Math.abs(ws));
    wA.push(ws >= 0 ? root : -root);
    wB.push(root);
  }
  const lora_A = combineTaskTensors(
    adapters.map((a) => a.lora_A),
    wA,
    rule,
    opts,
  );
  const lora_B = combineTaskTensors(
    adapters.map((a) => a.lora_B),
    wB,
    rule,
    opts,
  );
  return { lora_A, lora_B, rank: (adapters[0] as MergeAdapter).r };
}

/**
 * cat. PEFT computes (A·w)·s with two float32 roundings; the exact variant rounds once, A·(w·s).
 */
export function mergeCat(adapters: readonly MergeAdapter[], out: number, inF: number, exact: boolean): Factors {
  const rank = adapters.reduce((s, a) => s + a.r, 0);
  const lora_A = new Float32Array(rank * inF);
  const lora_B = new Float32Array(out * rank);
  let row = 0;
  for (const ad of adapters) {
    const r = ad.r;
    const A = ad.lora_A;
    if (exact) {
      const c = ad.weight * ad.scaling;
      for (let i = 0; i < r * inF; i++) lora_A[row * inF + i] = f((A[i] as number) * c);
    } else {
      const w = f(ad.weight);
      const s = f(ad.scaling);
      for (let i = 0; i < r * inF; i++) lora_A[row * inF + i] = f(f((A[i] as number) * w) * s);
    }
    const B = ad.lora_B;
    for (let i = 0; i < out; i++) for (let k = 0; k < r; k++) lora_B[i * rank + row + k] = B[i * r + k] as number;
    row += r;
  }
  return { lora_A, lora_B, rank };
}
