import { type LoraAdapter, mixTerms, PROJECTIONS, projectionModule, stackTerms, toFloat32 } from '@lora-edge/shared';
import type { Backend, LoraHandle, VeraProjectionHandle } from '../backend/types.ts';
import type { Cached } from './cache.ts';
import type { RunnerModel, TensorSource } from './model.ts';
import { buildVeraStacks } from './vera.ts';

/** An adapter in a request's mix. `id` names it in cache keys (a content digest in production). */
export interface MixEntry {
  id: string;
  adapter: LoraAdapter;
  weight: number;
}

/** The cache key of a mix: sorted ids with weights, so [a:0.3, b:0.7] and [b:0.7, a:0.3] share stacks. */
export function mixKey(mix: readonly MixEntry[]): string {
  return mix
    .map((m) => `${m.id}@${m.weight}`)
    .sort()
    .join('+');
}

/** One mix's LoRA handles per module, living in the backend. */
export interface LoraStacks extends Cached {
  key: string;
  /** Keyed by `layer * PROJECTIONS.length + projection index`. */
  handles: (LoraHandle | undefined)[];
  /** VeRA: the shared projection the handles read (one per base and projection). */
  projections?: VeraProjectionHandle[];
}

/**
 * The backend form of a mix, per module:
 * - a VeRA-only mix whose adapters all read the same shared projection (one adapter, or several
 *   of one PRNG key, rank and shape) runs on VeRA handles over one projection handle per base
 *   (vera.ts), when the backend has them;
 * - every other mix (LoRA, DoRA, AdaLoRA, VeRA beside other types or over other projections)
 *   is stacked (stackTerms): VeRA then materialized as A = λ_d ⊙ A_s, B = λ_b ⊙ B_s, exact for
 *   any mix of types;
 * - LoRI-style adapters need nothing here: the backend sees their sparse B on createLora and
 *   keeps it sparse where that is faster (a stacked mix stays sparse as long as B is).
 * `bytes` counts what the backend holds (sparse B as stored).
 */
export function buildStacks(
  backend: Backend,
  base: RunnerModel,
  source: TensorSource,
  mix: readonly MixEntry[],
  factorDtype: 'f32' | 'bf16' = 'f32',
): LoraStacks {
  const vera = buildVeraStacks(backend, base, mix, mixKey(mix));
  if (vera) return vera;
  const terms = mixTerms(mix.map((m) => ({ name: m.id, adapter: m.adapter, weight: m.weight })));
  const handles: (LoraHandle | undefined)[] = [];
  let bytes = 0;
  base.layers.forEach((layer, l) => {
    PROJECTIONS.forEach((p, pi) => {
      const module = projectionModule(l, p);
      const t = terms.get(module);
      if (!t?.length) return;
      const w = layer.proj[p];
      // DoRA needs W itself for its row norms; LoRA terms ignore it.
      const W = t.some((x) => x.magnitude) ? toFloat32(source.get(`${module}.weight`)!) : undefined;
      const s = stackTerms(W, w.out, w.in, t);
      const h = backend.createLora({ rank: s.rank, out: w.out, in: w.in, A: s.A, B: s.B, rowScale: s.rowScale, dtype: factorDtype });
      handles[l * PROJECTIONS.length + pi] = h;
      bytes += h.bytes ?? (s.A.length + s.B.length + (s.rowScale?.length ?? 0)) * 4;
    });
  });
  return {
    key: mixKey(mix),
    handles,
    bytes,
    release() {
      for (const h of handles) if (h) backend.release?.(h);
    },
  };
}
