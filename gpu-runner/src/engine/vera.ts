/**
 * Unmerged VeRA without materializing: the shared projections (vera_A [r, maxIn], vera_B
 * [maxOut, r]) go into the backend once per base model and projection (PRNG key, rank, shape and
 * content), and each module's handle holds only its λ_b [out], λ_d [r] per adapter. A mix of
 * several VeRA adapters over the same projection is one handle per module with one term each
 * (the shrink A_s x is shared). Anything else returns undefined and is stacked by mix.ts.
 */
import { type LoraModule, PROJECTIONS, projectionModule } from '@lora-edge/shared';
import type { Backend, LoraHandle, VeraProjectionHandle, VeraTerm } from '../backend/types.ts';
import type { LoraStacks, MixEntry } from './mix.ts';
import type { RunnerModel } from './model.ts';

interface Projection {
  key: string;
  rank: number;
  maxIn: number;
  maxOut: number;
  A: Float32Array;
  B: Float32Array;
}

interface Shared {
  handle: VeraProjectionHandle;
  A: Float32Array;
  B: Float32Array;
  users: number;
}

/** Projection handles per base model (the model is the base; its backend holds the handles). */
const registries = new WeakMap<RunnerModel, Map<string, Shared>>();

/** FNV-1a over the values' bits: buckets projections by content; equality is still checked value by value. */
const digests = new WeakMap<Float32Array, number>();
function digest(a: Float32Array): number {
  let h = digests.get(a);
  if (h !== undefined) return h;
  const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
  h = 0x811c9dc5;
  for (let i = 0; i < u.length; i++) h = Math.imul(h ^ (u[i] as number), 0x01000193) >>> 0;
  digests.set(a, h);
  return h;
}

function sameValues(a: Float32Array, b: Float32Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

function projectionOf(m: LoraModule, prngKey: unknown): Projection | undefined {
  const v = m.vera;
  if (!v) return undefined;
  const rank = m.r;
  const maxOut = v.veraB.length / rank;
  const key = `${String(prngKey ?? 'none')}|r${rank}|${v.maxIn}x${maxOut}|${digest(v.veraA).toString(16)}.${digest(v.veraB).toString(16)}`;
  return { key, rank, maxIn: v.maxIn, maxOut, A: v.veraA, B: v.veraB };
}

/** The one projection every module of every adapter of the mix reads, or undefined. */
export function sharedProjection(mix: readonly MixEntry[]): Projection | undefined {
  let first: Projection | undefined;
  const checked = new Set<Float32Array>(); // an adapter's modules share its arrays: compare each once
  for (const { adapter } of mix) {
    if (adapter.peftType !== 'VERA') return undefined;
    for (const m of adapter.modules.values()) {
      const p = projectionOf(m, adapter.config.projection_prng_key);
      if (!p) return undefined;
      first ??= p;
      if (p.key !== first.key) return undefined;
      for (const [a, b] of [
        [p.A, first.A],
        [p.B, first.B],
      ] as const) {
        if (checked.has(a)) continue;
        if (!sameValues(a, b)) return undefined;
        checked.add(a);
      }
    }
  }
  return first;
}

/** The VeRA handles of a VeRA-only mix over one projection, or undefined (then mix.ts stacks factors). */
export function buildVeraStacks(backend: Backend, base: RunnerModel, mix: readonly MixEntry[], key: string): LoraStacks | undefined {
  if (!backend.createVera || !backend.createVeraProjection) return undefined;
  const proj = sharedProjection(mix);
  if (!proj) return undefined;
  const registry = registries.get(base) ?? new Map<string, Shared>();
  registries.set(base, registry);
  let shared = registry.get(proj.key);
  // Same key, other values: a digest collision. Rare enough to just stack this mix.
  if (shared && !(sameValues(shared.A, proj.A) && sameValues(shared.B, proj.B))) return undefined;
  // The creator's entry carries the projection's bytes; later users count only their scales.
  let bytes = 0;
  if (!shared) {
    const handle = backend.createVeraProjection({ rank: proj.rank, maxIn: proj.maxIn, maxOut: proj.maxOut, A: proj.A, B: proj.B });
    shared = { handle, A: proj.A, B: proj.B, users: 0 };
    registry.set(proj.key, shared);
    bytes += handle.bytes;
  }
  const entry = shared;
  entry.users++;
  const handles: (LoraHandle | undefined)[] = [];
  const release = () => {
    for (const h of handles) if (h) backend.release?.(h);
    if (--entry.users === 0) {
      backend.release?.(entry.handle);
      registry.delete(proj.key);
    }
  };
  try {
    base.layers.forEach((layer, l) => {
      PROJECTIONS.forEach((p, pi) => {
        const module = projectionModule(l, p);
        const terms: VeraTerm[] = [];
        for (const { adapter, weight } of mix) {
          const m = adapter.modules.get(module);
          // λ_b carries the mix weight (and VeRA's scaling, which is 1).
          if (m?.vera) terms.push({ lambdaB: m.vera.lambdaB.map((v) => v * weight * m.scaling), lambdaD: m.vera.lambdaD });
        }
        if (!terms.length) return;
        const w = layer.proj[p];
        const h = backend.createVera!({ projection: entry.handle, out: w.out, in: w.in, terms });
        handles[l * PROJECTIONS.length + pi] = h;
        bytes += h.bytes ?? terms.length * (w.out + proj.rank) * 4;
      });
    });
  } catch (e) {
    release();
    throw e;
  }
  return { key, handles, bytes, projections: [entry.handle], release };
}
