/**
 * A merge recipe and its key. The key is SHA-256 over the canonical JSON of (base digest,
 * adapter digests with weights sorted, method, options, output): the same merge named two ways
 * (adapters in another order, an option spelled out at its default, one that the method ignores)
 * gets the same key, so it is computed once and cached once.
 *
 * Adapters are sorted by (digest, weight), and the merge runs in that order: order-dependent
 * parts (DARE's random masks, the layout of a `cat` merge, float summation) then follow the key.
 */
import { z } from 'zod';
import { LoraEdgeError } from '../errors.ts';
import { parseWith } from '../json.ts';
import { MERGE_METHODS, type MergeMethod } from '../merge/types.ts';
import { isValidBlocksize } from '../nf4/types.ts';
import { sha256Hex } from '../storage/digest.ts';
import { DigestSchema } from './schemas.ts';

export const MERGE_OUTPUTS = ['adapter', 'fused', 'fused-nf4'] as const;
export type MergeOutput = (typeof MERGE_OUTPUTS)[number];

export const RECIPE_VERSION = 1;

/** What a fused-nf4 recipe gets unless it says otherwise (QLoRA's and bitsandbytes' defaults). */
export const NF4_DEFAULTS = { double_quant: false, blocksize: 64 } as const;

export const RecipeOptionsSchema = z.strictObject({
  /** Fraction kept by ties, dare_* and magnitude_prune*, in (0, 1]. */
  density: z.number().gt(0).lte(1).optional(),
  /** Rank of the *_svd (and exact) results. */
  svd_rank: z.number().int().positive().max(65536).optional(),
  svd_clamp: z.number().min(0).max(1).optional(),
  majority_sign: z.enum(['total', 'frequency']).optional(),
  /** DARE's mask stream. */
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 32 - 1)
    .optional(),
  /** The exact weighted sum of deltas instead of PEFT's arithmetic. */
  exact: z.boolean().optional(),
  /** fused-nf4 only. */
  double_quant: z.boolean().optional(),
  blocksize: z.number().int().refine(isValidBlocksize, 'a power of two from 32 to 4096').optional(),
});
export type RecipeOptions = z.infer<typeof RecipeOptionsSchema>;

export const RecipeAdapterSchema = z.object({ digest: DigestSchema, weight: z.number().finite() });

export const RecipeSchema = z.object({
  base: DigestSchema,
  adapters: z.array(RecipeAdapterSchema).min(1).max(16),
  method: z.enum(MERGE_METHODS),
  options: RecipeOptionsSchema,
  output: z.enum(MERGE_OUTPUTS),
});
export type Recipe = z.infer<typeof RecipeSchema>;

const DENSITY_METHODS: readonly MergeMethod[] = [
  'ties',
  'ties_svd',
  'dare_linear',
  'dare_ties',
  'dare_linear_svd',
  'dare_ties_svd',
  'magnitude_prune',
  'magnitude_prune_svd',
];

export function usesDensity(m: MergeMethod): boolean {
  return DENSITY_METHODS.includes(m);
}

export function usesSign(m: MergeMethod): boolean {
  return m === 'ties' || m === 'ties_svd' || m === 'dare_ties' || m === 'dare_ties_svd';
}

export function usesSeed(m: MergeMethod): boolean {
  return m.startsWith('dare_');
}

export function usesSvd(m: MergeMethod): boolean {
  return m === 'svd' || m.endsWith('_svd');
}

/**
 * Fused outputs with method `linear` are W + Σ w_i·s_i·B_i·A_i: what `lora-edge fuse` writes and
 * what unmerged serving computes, so a cached fused model answers like the mix it replaces.
 */
export function fusesExactSum(r: Pick<Recipe, 'method' | 'output'>): boolean {
  return r.output !== 'adapter' && r.method === 'linear';
}

/**
 * The recipe in canonical form: adapters sorted, defaults filled in, options the method does not
 * read dropped. Refuses what cannot be merged: a method that needs a density without one, no
 * weights, weights that sum to zero.
 */
export function canonicalRecipe(input: Recipe): Recipe {
  const r = parseWith(RecipeSchema, input, 'merge_invalid', 'recipe');
  if (r.adapters.reduce((s, a) => s + a.weight, 0) === 0) {
    throw new LoraEdgeError('adapter_weight_invalid', 'the mix weights sum to zero', { field: 'adapters' });
  }
  const o = r.options;
  const exactSum = fusesExactSum(r);
  const exact = exactSum ? true : (o.exact ?? false);
  const options: RecipeOptions = { exact };
  if (!exactSum) {
    if (usesDensity(r.method)) {
      if (o.density === undefined)
        throw new LoraEdgeError('merge_invalid', `method ${r.method} needs a density in (0, 1]`, { field: 'options.density' });
      options.density = o.density;
    }
    if ((usesSvd(r.method) || exact) && o.svd_rank !== undefined) options.svd_rank = o.svd_rank;
    if (usesSvd(r.method) && o.svd_clamp !== undefined) options.svd_clamp = o.svd_clamp;
    if (usesSign(r.method)) options.majority_sign = o.majority_sign ?? 'total';
    if (usesSeed(r.method)) options.seed = o.seed ?? 0;
  }
  if (r.output === 'fused-nf4') {
    options.double_quant = o.double_quant ?? NF4_DEFAULTS.double_quant;
    options.blocksize = o.blocksize ?? NF4_DEFAULTS.blocksize;
  }
  const adapters = r.adapters
    .map((a) => ({ digest: a.digest, weight: a.weight === 0 ? 0 : a.weight }))
    .sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : a.weight - b.weight));
  return { base: r.base, adapters, method: r.method, options: sortKeys(options) as RecipeOptions, output: r.output };
}

/** JSON with object keys sorted at every depth: one text per value. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortDeep(value));
}

function sortDeep(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortDeep);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(
      Object.entries(v as Record<string, unknown>)
        .filter(([, x]) => x !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([k, x]) => [k, sortDeep(x)]),
    );
  }
  return v;
}

function sortKeys<T extends object>(o: T): T {
  return sortDeep(o) as T;
}

/** The cache key of a recipe: the R2 prefix `artifacts/<key>/` and the merge job's lock. */
export async function recipeKey(recipe: Recipe): Promise<string> {
  const c = canonicalRecipe(recipe);
  return sha256Hex(canonicalJson({ lora_edge_recipe: RECIPE_VERSION, ...c }));
}
