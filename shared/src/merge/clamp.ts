/**
 * PEFT's svd_clamp (from kohya-ss' svd_merge_lora): hi = torch.quantile of the *signed* entries
 * of U·S and Vh together, lo = −hi, and both factors are clamped to [lo, hi]. (Not the quantile
 * of absolute values: with clamp = 0.99 the bound is the 99th percentile of the signed values.)
 */

/** torch.quantile's default 'linear' interpolation: position q·(n−1) in the sorted values. */
export function quantileLinear(values: Float32Array, q: number): number {
  const sorted = values.slice().sort();
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const pos = q * (n - 1);
  const below = Math.floor(pos);
  const above = Math.min(n - 1, below + 1);
  const lo = sorted[below] as number;
  const hi = sorted[above] as number;
  return Math.fround(lo + (pos - below) * (hi - lo));
}

/** Clamps both factors in place to ±quantile(clamp) of their combined signed entries; returns hi. */
export function clampFactors(lora_B: Float32Array, lora_A: Float32Array, clamp: number): number {
  const all = new Float32Array(lora_B.length + lora_A.length);
  all.set(lora_B, 0);
  all.set(lora_A, lora_B.length);
  const hi = quantileLinear(all, clamp);
  const lo = -hi;
  // torch.clamp(min, max) with min > max yields max everywhere; min(max(x, lo), hi) does the same.
  for (const t of [lora_B, lora_A]) for (let i = 0; i < t.length; i++) t[i] = Math.min(Math.max(t[i] as number, lo), hi);
  return hi;
}
