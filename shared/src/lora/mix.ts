import { LoraEdgeError } from '../errors.ts';
import type { LoraAdapter } from '../peft/adapter.ts';
import { type DeltaTerm, deltaTerm } from './terms.ts';

/** An adapter in a mix, with its weight (negative allowed). */
export interface WeightedAdapter {
  name: string;
  adapter: LoraAdapter;
  weight: number;
}

/** Refuses weights that are not finite or that sum to zero (a mix that means nothing). */
export function assertMixWeights(weights: readonly { name: string; weight: number }[]): void {
  if (weights.length === 0) throw new LoraEdgeError('adapter_weight_invalid', 'the mix names no adapter');
  for (const w of weights) {
    if (!Number.isFinite(w.weight))
      throw new LoraEdgeError('adapter_weight_invalid', `weight ${w.weight} is not finite`, { field: w.name });
  }
  if (weights.reduce((s, w) => s + w.weight, 0) === 0) throw new LoraEdgeError('adapter_weight_invalid', 'the mix weights sum to zero');
}

/** Per module (e.g. `model.layers.0.self_attn.q_proj`), the delta terms of every adapter that targets it, in mix order. */
export function mixTerms(mix: readonly WeightedAdapter[]): Map<string, DeltaTerm[]> {
  assertMixWeights(mix);
  const out = new Map<string, DeltaTerm[]>();
  for (const { name, adapter, weight } of mix) {
    for (const m of adapter.modules.values()) {
      const list = out.get(m.module) ?? [];
      list.push(deltaTerm(m, weight, name));
      out.set(m.module, list);
    }
  }
  return out;
}
