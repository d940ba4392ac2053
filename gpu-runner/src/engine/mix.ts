import { type LoraAdapter, mixTerms, PROJECTIONS, projectionModule, stackTerms, toFloat32 } from '@lora-edge/shared';
import type { Backend, LoraHandle } from '../backend/types.ts';
import type { Cached } from './cache.ts';
import type { RunnerModel, TensorSource } from './model.ts';

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

/** One mix's stacked LoRA factors per module, living in the backend. */
export interface LoraStacks extends Cached {
  key: string;
  /** Keyed by `layer * PROJECTIONS.length + projection index`. */
  handles: (LoraHandle | undefined)[];
}

export function buildStacks(backend: Backend, base: RunnerModel, source: TensorSource, mix: readonly MixEntry[]): LoraStacks {
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
      handles[l * PROJECTIONS.length + pi] = backend.createLora({
        rank: s.rank,
        out: w.out,
        in: w.in,
        A: s.A,
        B: s.B,
        rowScale: s.rowScale,
      });
      bytes += (s.A.length + s.B.length + (s.rowScale?.length ?? 0)) * 4;
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
