import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readAdapterFiles } from '@lora-edge/gpu-runner';
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  FACTOR_METHODS,
  fromFloat32,
  type LoraAdapter,
  LoraEdgeError,
  loadLoraAdapter,
  MERGE_METHODS,
  type MergeAdapter,
  type MergeMethod,
  type MergeResult,
  mergeAdapters,
  type NamedTensor,
  type RandomSource,
  readSafetensors,
  replayRandomSource,
  seededRandomSource,
  selectRankOneComponents,
  serializeSafetensors,
  toFloat32,
} from '@lora-edge/shared';
import { parseAdapterArg } from '../adapter-arg.ts';
import { UsageError } from '../errors.ts';
import { writeDirAtomically } from '../output-dir.ts';
import { progressBar } from '../progress.ts';

const METHODS = [...MERGE_METHODS, 'rank_one'] as const;

export const MERGE_HELP = `Usage: lora-edge merge --adapter <dir>[:weight] ... --method <type> --out <dir> [options]

Combines adapters into one PEFT LoRA adapter, as PEFT's add_weighted_adapter does (quirks
included, so the result matches PEFT) or exactly with --exact. Writes adapter_config.json with
r = lora_alpha = the new rank, and adapter_model.safetensors with PEFT's keys; the recipe is in
the safetensors metadata.

Methods: ${METHODS.join(', ')}
  (rank_one: keep the largest rank-one components of the whole mix by singular value)

Options:
  --adapter <dir>[:w]      PEFT adapter (repeat); the weight follows the last colon, may be negative
  --method <type>          combination type (default linear)
  --density <d>            fraction kept by ties / dare / magnitude_prune, in (0, 1]
  --svd-rank <k>           rank of the *_svd results (default: the largest input rank)
  --svd-clamp <q>          clamp the SVD factors at quantile q (PEFT's svd_clamp)
  --majority-sign <m>      total | frequency (ties methods; default total)
  --seed <n>               seed of DARE's random masks (default 0)
  --replay-masks <file>    DARE: replay recorded keep-masks instead (U8 tensors named mask.*, one
                           draw each, in file order; e.g. masks PEFT drew)
  --exact                  the exact weighted sum of deltas instead of PEFT's arithmetic
  --rank <k>               rank_one: components kept (default: the mean input rank)
  --force                  replace a non-empty --out
  --quiet                  no progress output`;

export interface MergeCliOptions {
  adapters: string[];
  method?: string;
  density?: string;
  svdRank?: string;
  svdClamp?: string;
  majoritySign?: string;
  seed?: string;
  exact?: boolean;
  rank?: string;
  replayMasks?: string;
  out: string;
  force?: boolean;
  quiet?: boolean;
}

function optNum(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${flag} ${v}: not a number`);
  return n;
}

/** Module name → the config's target_modules entry: the last path component. */
function leaf(module: string): string {
  return module.slice(module.lastIndexOf('.') + 1);
}

export async function merge(opts: MergeCliOptions): Promise<{ out: string; modules: number; rank: number; warnings: string[] }> {
  const method = (opts.method ?? 'linear') as (typeof METHODS)[number];
  if (!METHODS.includes(method)) throw new UsageError(`--method ${opts.method}: use one of ${METHODS.join(', ')}`);
  if (opts.adapters.length === 0) throw new UsageError('merge needs at least one --adapter <dir>[:weight]');
  if (!opts.out) throw new UsageError('merge needs --out <dir>');
  if (opts.majoritySign !== undefined && !['total', 'frequency'].includes(opts.majoritySign))
    throw new UsageError(`--majority-sign ${opts.majoritySign}: use total or frequency`);

  const inputs = opts.adapters.map((arg) => {
    const { dir, weight } = parseAdapterArg(arg);
    const files = readAdapterFiles(dir);
    const adapter = loadLoraAdapter(files);
    if (adapter.useDora)
      throw new LoraEdgeError('adapter_unsupported', "DoRA adapters cannot be combined (PEFT's add_weighted_adapter has no DoRA merge)", {
        file: files.configFile,
      });
    if (FACTOR_METHODS.includes(method as MergeMethod) && !opts.exact && adapter.peftType !== 'LORA') {
      throw new LoraEdgeError(
        'adapter_unsupported',
        `${method} combines LoRA factors; ${dir} is ${adapter.peftType} (use cat, an *_svd method or --exact)`,
        { file: files.configFile },
      );
    }
    return { dir, weight, adapter, sha256: createHash('sha256').update(files.weights).digest('hex') };
  });
  const bases = new Set(inputs.map((i) => i.adapter.config.base_model_name_or_path ?? ''));
  const warnings: string[] = [];
  if (bases.size > 1) warnings.push(`the adapters name different bases (${[...bases].join(', ')}); merging where shapes agree`);

  // Modules every adapter targets; the others are left out, with a warning, as PEFT skips them.
  const all = inputs.map((i) => new Set(i.adapter.modules.keys()));
  const common = [...(all[0] as Set<string>)].filter((m) => all.every((s) => s.has(m))).sort(moduleOrder);
  const partial = new Set(all.flatMap((s) => [...s]).filter((m) => !common.includes(m)));
  if (common.length === 0) throw new LoraEdgeError('invalid_argument', 'the adapters have no target module in common');
  if (partial.size)
    warnings.push(
      `${partial.size} modules are not targeted by every adapter and are left out: ${[...partial].slice(0, 4).join(', ')}${partial.size > 4 ? ', ...' : ''}`,
    );

  const random = opts.replayMasks ? replayMasks(opts.replayMasks) : seededRandomSource(optNum(opts.seed, '--seed') ?? 0);
  const mergeOpts = {
    method: method as MergeMethod,
    density: optNum(opts.density, '--density'),
    svdRank: optNum(opts.svdRank, '--svd-rank'),
    svdClamp: optNum(opts.svdClamp, '--svd-clamp'),
    majoritySignMethod: opts.majoritySign as 'total' | 'frequency' | undefined,
    exact: opts.exact ?? false,
    random,
  };
  const bar = progressBar('merge', common.length, { quiet: opts.quiet, unit: 'items' });
  const tensors: NamedTensor[] = [];
  const ranks = new Map<string, number>();
  let worstDiscarded = 0;
  let semantics: MergeResult['semantics'] = 'peft';
  for (const module of common) {
    const parts: MergeAdapter[] = inputs.map((i) => {
      const m = (i.adapter as LoraAdapter).modules.get(module)!;
      const [out, inF] = [m.outFeatures, m.inFeatures];
      const first = (inputs[0] as { adapter: LoraAdapter }).adapter.modules.get(module)!;
      if (out !== first.outFeatures || inF !== first.inFeatures) {
        throw new LoraEdgeError(
          'adapter_base_mismatch',
          `${module} is ${out}×${inF} in ${i.dir} but ${first.outFeatures}×${first.inFeatures} in ${inputs[0]?.dir}: adapters for different bases`,
        );
      }
      return { name: i.dir, lora_A: toFloat32(m.A), lora_B: toFloat32(m.B), r: m.r, scaling: m.scaling, weight: i.weight };
    });
    let r: MergeResult;
    try {
      r = method === 'rank_one' ? selectRankOneComponents(parts, { k: optNum(opts.rank, '--rank') }) : mergeAdapters(parts, mergeOpts);
    } catch (e) {
      throw e instanceof LoraEdgeError ? e.at({ tensor: module }) : e;
    }
    semantics = r.semantics;
    worstDiscarded = Math.max(worstDiscarded, r.discardedSpectrum ?? 0);
    ranks.set(module, r.rank);
    tensors.push({ name: `base_model.model.${module}.lora_A.weight`, ...fromFloat32(r.lora_A, 'F32', [r.rank, r.inFeatures]) });
    tensors.push({ name: `base_model.model.${module}.lora_B.weight`, ...fromFloat32(r.lora_B, 'F32', [r.outFeatures, r.rank]) });
    bar.advance(1);
  }
  tensors.sort((a, b) => (a.name < b.name ? -1 : 1));

  // One r for the config, the others as rank/alpha patterns (full module paths match exactly).
  const counts = new Map<number, number>();
  for (const r of ranks.values()) counts.set(r, (counts.get(r) ?? 0) + 1);
  const r = [...counts].sort((a, b) => b[1] - a[1] || b[0] - a[0])[0]?.[0] as number;
  const pattern: Record<string, number> = {};
  for (const [m, k] of ranks) if (k !== r) pattern[m] = k;
  const first = inputs[0]!.adapter.config;
  const config = sortKeys({
    alpha_pattern: pattern,
    base_model_name_or_path: first.base_model_name_or_path ?? null,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: r,
    lora_dropout: 0.0,
    modules_to_save: null,
    peft_type: 'LORA',
    r,
    rank_pattern: pattern,
    revision: null,
    target_modules: [...new Set(common.map(leaf))].sort(),
    task_type: first.task_type ?? 'CAUSAL_LM',
    use_dora: false,
    use_rslora: false,
  });
  const recipe = {
    op: 'merge',
    method,
    semantics,
    options: {
      density: mergeOpts.density,
      svd_rank: mergeOpts.svdRank,
      svd_clamp: mergeOpts.svdClamp,
      majority_sign: mergeOpts.majoritySignMethod,
      seed: optNum(opts.seed, '--seed') ?? 0,
    },
    adapters: inputs.map((i) => ({ adapter: i.dir, weight: i.weight, sha256: i.sha256, peft_type: i.adapter.peftType })),
    max_discarded_frobenius: worstDiscarded,
  };
  await writeDirAtomically(opts.out, opts.force ?? false, (dir) => {
    writeFileSync(join(dir, ADAPTER_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
    writeFileSync(
      join(dir, ADAPTER_WEIGHTS_FILE),
      serializeSafetensors(tensors, { metadata: { format: 'pt', lora_edge: JSON.stringify(recipe) } }),
    );
  });
  bar.done();
  return { out: opts.out, modules: common.length, rank: r, warnings };
}

function replayMasks(path: string): RandomSource {
  const st = readSafetensors(new Uint8Array(readFileSync(path)));
  const masks = st.names().filter((n) => n.startsWith('mask.'));
  if (masks.length === 0) throw new LoraEdgeError('invalid_argument', 'no mask.* tensors to replay', { file: path });
  return replayRandomSource(masks.map((n) => st.tensor(n).data));
}

/** model.layers.N... in numeric layer order. */
function moduleOrder(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

function sortKeys(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
}
