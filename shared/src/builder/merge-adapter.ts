/**
 * A merged PEFT adapter in the CLI's format (`lora-edge merge`): one mergeAdapters call per
 * module the adapters have in common, `r = lora_alpha =` the new rank (others as rank/alpha
 * patterns), PEFT's tensor keys, the recipe in the safetensors metadata.
 */
import { LoraEdgeError } from '../errors.ts';
import {
  FACTOR_METHODS,
  type MergeAdapter,
  type MergeMethod,
  type MergeResult,
  mergeAdapters,
  seededRandomSource,
} from '../merge/index.ts';
import type { LoraAdapter } from '../peft/index.ts';
import type { RecipeOptions } from '../registry/index.ts';
import { type NamedTensor, serializeSafetensors } from '../safetensors/index.ts';
import { fromFloat32, toFloat32 } from '../tensor/index.ts';

export interface MergeInput {
  id: string;
  digest: string;
  weight: number;
  adapter: LoraAdapter;
}

export interface MergedModule {
  module: string;
  result: MergeResult;
}

export type Report = (fraction: number, stage: string) => Promise<void>;

/** Checks the CLI makes before merging: DoRA cannot be combined; factor methods need LoRA factors. */
export function checkMergeable(inputs: readonly Pick<MergeInput, 'id' | 'adapter'>[], method: MergeMethod, exact: boolean): void {
  for (const i of inputs) {
    if (i.adapter.useDora) {
      throw new LoraEdgeError(
        'adapter_unsupported',
        `${i.id} is DoRA: DoRA adapters cannot be combined (PEFT's add_weighted_adapter has no DoRA merge)`,
        {
          field: i.id,
        },
      );
    }
    if (FACTOR_METHODS.includes(method) && !exact && i.adapter.peftType !== 'LORA') {
      throw new LoraEdgeError(
        'adapter_unsupported',
        `${method} combines LoRA factors; ${i.id} is ${i.adapter.peftType} (use cat, an *_svd method or exact)`,
        {
          field: i.id,
        },
      );
    }
  }
}

/** model.layers.N… in numeric layer order. */
export function moduleOrder(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/** Merges every common module; one DARE mask stream across modules in module order, as the CLI. */
export async function mergeModules(
  inputs: readonly MergeInput[],
  method: MergeMethod,
  options: RecipeOptions,
  report: Report,
): Promise<{ modules: MergedModule[]; warnings: string[]; semantics: MergeResult['semantics'] }> {
  const exact = options.exact ?? false;
  checkMergeable(inputs, method, exact);
  const sets = inputs.map((i) => new Set(i.adapter.modules.keys()));
  const first = sets[0] as Set<string>;
  const common = [...first].filter((m) => sets.every((s) => s.has(m))).sort(moduleOrder);
  if (common.length === 0) throw new LoraEdgeError('merge_invalid', 'the adapters have no target module in common');
  const warnings: string[] = [];
  const partial = new Set(sets.flatMap((s) => [...s]).filter((m) => !common.includes(m)));
  if (partial.size)
    warnings.push(
      `${partial.size} modules are not targeted by every adapter and are left out: ${[...partial].slice(0, 4).join(', ')}${partial.size > 4 ? ', ...' : ''}`,
    );

  const random = seededRandomSource(options.seed ?? 0);
  const modules: MergedModule[] = [];
  let semantics: MergeResult['semantics'] = exact ? 'exact' : 'peft';
  for (const [k, module] of common.entries()) {
    const parts: MergeAdapter[] = inputs.map((i) => {
      const m = i.adapter.modules.get(module)!;
      return { name: i.id, lora_A: toFloat32(m.A), lora_B: toFloat32(m.B), r: m.r, scaling: m.scaling, weight: i.weight };
    });
    let result: MergeResult;
    try {
      result = mergeAdapters(parts, {
        method,
        density: options.density,
        svdRank: options.svd_rank,
        svdClamp: options.svd_clamp,
        majoritySignMethod: options.majority_sign,
        exact,
        random,
      });
    } catch (e) {
      throw e instanceof LoraEdgeError ? e.at({ tensor: module }) : e;
    }
    semantics = result.semantics;
    modules.push({ module, result });
    await report((k + 1) / common.length, `merging ${k + 1}/${common.length} modules`);
  }
  return { modules, warnings, semantics };
}

/** The two files of the merged adapter. */
export function mergedAdapterFiles(
  merged: readonly MergedModule[],
  first: LoraAdapter,
  recipeMetadata: Record<string, unknown>,
): { config: Record<string, unknown>; weights: Uint8Array; rank: number } {
  const tensors: NamedTensor[] = [];
  const ranks = new Map<string, number>();
  for (const { module, result: r } of merged) {
    ranks.set(module, r.rank);
    tensors.push({ name: `base_model.model.${module}.lora_A.weight`, ...fromFloat32(r.lora_A, 'F32', [r.rank, r.inFeatures]) });
    tensors.push({ name: `base_model.model.${module}.lora_B.weight`, ...fromFloat32(r.lora_B, 'F32', [r.outFeatures, r.rank]) });
  }
  tensors.sort((a, b) => (a.name < b.name ? -1 : 1));
  // The most common rank is the config's r (ties: the larger); the others become patterns.
  const counts = new Map<number, number>();
  for (const r of ranks.values()) counts.set(r, (counts.get(r) ?? 0) + 1);
  const rank = [...counts].sort((a, b) => b[1] - a[1] || b[0] - a[0])[0]?.[0] as number;
  const pattern: Record<string, number> = {};
  for (const [m, k] of ranks) if (k !== rank) pattern[m] = k;
  const leaf = (m: string) => m.slice(m.lastIndexOf('.') + 1);
  const config: Record<string, unknown> = {
    alpha_pattern: pattern,
    base_model_name_or_path: first.config.base_model_name_or_path ?? null,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: rank,
    lora_dropout: 0.0,
    modules_to_save: null,
    peft_type: 'LORA',
    r: rank,
    rank_pattern: pattern,
    revision: null,
    target_modules: [...new Set(merged.map((m) => leaf(m.module)))].sort(),
    task_type: first.config.task_type ?? 'CAUSAL_LM',
    use_dora: false,
    use_rslora: false,
  };
  const weights = serializeSafetensors(tensors, { metadata: { format: 'pt', lora_edge: JSON.stringify(recipeMetadata) } });
  return { config, weights, rank };
}
