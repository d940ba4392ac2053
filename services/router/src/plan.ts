/**
 * The execution plan of a selection (DESIGN step 4): the mix's recipe is (base digest, adapter
 * digests with weights, `linear`, output `fused`), whose SHA-256 is the cache key. When R2 holds
 * that merged artifact (its manifest is written last, so present means complete) the request runs
 * on the fused weights; otherwise it runs unmerged and the hit is counted, and once a mix has
 * MERGE_THRESHOLD hits the router asks the merge service to fuse it, so later requests run merged.
 *
 * Why `fused` + `linear`: that recipe is the exact sum W + Σ wᵢ·sᵢ·Bᵢ·Aᵢ, what unmerged serving
 * computes, so switching a mix from unmerged to merged does not change its answers. services/infer
 * reads models from `models/<digest>/`, so a fused artifact is served by copying its two files
 * there once (content-addressed: the digest is the files digest of what the manifest lists).
 */

import {
  type ArtifactManifest,
  artifactKey,
  type BaseModelRecord,
  MODEL_CONFIG_FILE,
  MODEL_WEIGHTS_FILE,
  modelKey,
  Registry,
  readArtifactManifest,
  recipeKey,
  type ServedBy,
  type ServeMode,
  sha256Hex,
} from './lib.ts';
import type { Selection } from './select.ts';

export const MERGE_METHOD = 'linear';
export const MERGE_OUTPUT = 'fused';

export interface Plan {
  selection: Selection;
  mode: ServeMode;
  /** The mix's recipe key; null for the base alone. */
  recipe: string | null;
  /** What infer loads: the base model, or the mix's fused artifact stored as a model. */
  modelDigest: string;
  target: 'edge' | 'gpu';
}

/** Where a base model's generations run: pinned by its placement, else the edge when it fits. */
export function targetOf(base: Pick<BaseModelRecord, 'placement' | 'edge_eligible'>): 'edge' | 'gpu' {
  const placement = base.placement ?? 'auto';
  if (placement === 'gpu') return 'gpu';
  return placement === 'edge' || base.edge_eligible ? 'edge' : 'gpu';
}

export async function mixRecipe(selection: Selection): Promise<string> {
  return recipeKey({
    base: selection.base.digest,
    adapters: selection.mix.map((m) => ({ digest: m.adapter.digest, weight: m.weight })),
    method: MERGE_METHOD,
    options: {},
    output: MERGE_OUTPUT,
  });
}

/** The files digest (storage/digest.ts `filesDigest`) of files known by their SHA-256 alone. */
export async function listedFilesDigest(files: readonly { name: string; sha256: string }[]): Promise<string> {
  const lines = ['lora-edge-files-v1', ...[...files].sort((a, b) => (a.name < b.name ? -1 : 1)).map((f) => `${f.name} ${f.sha256}`)];
  return sha256Hex(`${lines.join('\n')}\n`);
}

/** Recipes whose fused model is in place: artifacts are immutable, so this never goes stale (absence is not cached). */
const promoted = new Map<string, string>();

/**
 * The model digest of the recipe's fused artifact, copied under `models/<digest>/` if it is not
 * there yet; undefined while there is no complete fused artifact.
 */
export async function mergedModel(bucket: R2Bucket, recipe: string): Promise<string | undefined> {
  const known = promoted.get(recipe);
  if (known) return known;
  const manifest = await readArtifactManifest(bucket, recipe);
  if (manifest?.kind !== 'fused') return undefined;
  const digest = await promote(bucket, manifest);
  if (digest) promoted.set(recipe, digest);
  return digest;
}

async function promote(bucket: R2Bucket, manifest: ArtifactManifest): Promise<string | undefined> {
  const files = [MODEL_WEIGHTS_FILE, MODEL_CONFIG_FILE].map((name) => manifest.files.find((f) => f.name === name));
  if (files.some((f) => !f)) return undefined;
  const digest = await listedFilesDigest(files as { name: string; sha256: string }[]);
  // config.json goes last: infer reads it first, so its presence means the weights are there.
  if (await bucket.head(modelKey(digest, MODEL_CONFIG_FILE))) return digest;
  for (const f of files as { name: string; size: number }[]) {
    const src = await bucket.get(artifactKey(manifest.recipe, f.name));
    if (!src) return undefined;
    const body = src.body.pipeThrough(new FixedLengthStream(src.size));
    await bucket.put(modelKey(digest, f.name), body, { httpMetadata: src.httpMetadata });
  }
  return digest;
}

export async function plan(env: Env, selection: Selection): Promise<Plan> {
  const target = targetOf(selection.base);
  if (selection.mix.length === 0) return { selection, mode: 'base', recipe: null, modelDigest: selection.base.digest, target };
  const recipe = await mixRecipe(selection);
  const merged = await mergedModel(env.BLOBS, recipe);
  if (merged) return { selection, mode: 'merged', recipe, modelDigest: merged, target };
  return { selection, mode: 'unmerged', recipe, modelDigest: selection.base.digest, target };
}

/** The infer request's model and adapters for a plan. */
export function engineModel(p: Plan): {
  model: { digest: string };
  adapters: { tenant: string; name: string; digest: string; weight: number }[];
} {
  if (p.mode !== 'unmerged') return { model: { digest: p.modelDigest }, adapters: [] };
  return {
    model: { digest: p.modelDigest },
    adapters: p.selection.mix.map((m) => ({ tenant: m.adapter.tenant, name: m.adapter.name, digest: m.adapter.digest, weight: m.weight })),
  };
}

export function servedBy(p: Plan): ServedBy {
  const s: ServedBy = {
    model: p.selection.base.id,
    adapters: p.selection.mix.map((m) => ({ id: m.adapter.id, weight: m.weight })),
    mode: p.mode,
    recipe: p.recipe,
    selection: p.selection.source,
    target: p.target,
  };
  if (p.selection.alias !== undefined) s.alias = p.selection.alias;
  return s;
}

/** `x-lora-edge-served-by`: the same facts as the `lora_edge` field, as `key=value` pairs. */
export function servedByHeader(s: ServedBy): string {
  const parts = [`model=${s.model}`, `mode=${s.mode}`];
  if (s.adapters.length) parts.push(`adapters=${s.adapters.map((a) => `${a.id}*${a.weight}`).join(',')}`);
  if (s.recipe) parts.push(`recipe=${s.recipe}`);
  parts.push(`selection=${s.selection}`);
  if (s.alias) parts.push(`alias=${s.alias}`);
  return parts.join('; ');
}

/**
 * After an unmerged request was served: count the hit, and from MERGE_THRESHOLD hits on ask the
 * merge service to fuse the mix. It runs with the caller's own API key, so the job is theirs and
 * sees exactly the adapters they may use; repeated asks join the same job (its id is the recipe).
 */
export async function noteUnmerged(env: Env, p: Plan, authorization: string): Promise<void> {
  if (p.mode !== 'unmerged' || !p.recipe || p.target !== 'edge') return;
  const hits = await new Registry(env.REGISTRY).countHit(p.recipe);
  const threshold = Number(env.MERGE_THRESHOLD);
  if (!(threshold > 0) || hits.count < threshold) return;
  const res = await env.MERGE.fetch('https://merge.internal/v1/merges', {
    method: 'POST',
    headers: { authorization, 'content-type': 'application/json' },
    body: JSON.stringify({
      base: p.selection.base.id,
      adapters: p.selection.mix.map((m) => ({ id: m.adapter.id, weight: m.weight })),
      method: MERGE_METHOD,
      output: MERGE_OUTPUT,
    }),
  });
  if (res.status >= 300) console.warn(`merge of recipe ${p.recipe} refused: ${res.status} ${await res.text()}`);
  else await res.body?.cancel();
}
