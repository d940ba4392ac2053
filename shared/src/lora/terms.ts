import { LoraEdgeError } from '../errors.ts';
import type { LoraModule } from '../peft/adapter.ts';
import { toFloat32 } from '../tensor/tensor.ts';

/**
 * One adapter's contribution to one module, in float32: ΔW = scale · B A with
 * scale = mix weight × the adapter's scaling. DoRA terms carry their magnitude vector.
 */
export interface DeltaTerm {
  /** [r, in], row-major. */
  A: Float32Array;
  /** [out, r], row-major. */
  B: Float32Array;
  r: number;
  scale: number;
  magnitude?: Float32Array;
  /** For error messages: which adapter this came from. */
  source?: string;
}

/** The term of an adapter module at mix weight `weight`. DoRA is only defined at weight 1. */
export function deltaTerm(m: LoraModule, weight: number, source?: string): DeltaTerm {
  if (!Number.isFinite(weight)) throw new LoraEdgeError('adapter_weight_invalid', `weight ${weight} is not finite`, { field: source });
  if (m.magnitude && weight !== 1) {
    throw new LoraEdgeError(
      'adapter_weight_invalid',
      `${source ?? 'a DoRA adapter'} is DoRA: it can only be applied with weight 1 (PEFT defines no weighted DoRA merge), got ${weight}`,
      { field: source },
    );
  }
  const term: DeltaTerm = { A: toFloat32(m.A), B: toFloat32(m.B), r: m.r, scale: weight * m.scaling };
  if (m.magnitude) term.magnitude = toFloat32(m.magnitude);
  if (source !== undefined) term.source = source;
  return term;
}
