/**
 * Builds a merge job's artifact: load the inputs by digest from an object store, compute, write
 * the artifact (manifest last, so a crash leaves nothing visible). The same code runs in the merge
 * Worker (R2 binding) and on a GPU runner (R2 through the gateway) for jobs beyond a Worker.
 */

import { LoraEdgeError } from '../errors.ts';
import { type DeltaTerm, mixTerms } from '../lora/index.ts';
import { parseModelConfig } from '../model/index.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, fitAdapterToModel, loadLoraAdapter } from '../peft/index.ts';
import { fusesExactSum } from '../registry/index.ts';
import {
  type ArtifactInput,
  adapterKey,
  MODEL_CONFIG_FILE,
  MODEL_WEIGHTS_FILE,
  modelKey,
  type ObjectStore,
  readArtifactManifest,
  writeArtifact,
} from '../storage/index.ts';
import { type FuseFn, fusedModelFiles } from './fuse-model.ts';
import { type MergeInput, mergedAdapterFiles, mergeModules, type Report } from './merge-adapter.ts';
import type { JobResult, MergePayload } from './payload.ts';

async function getBytes(store: ObjectStore, key: string): Promise<Uint8Array> {
  const o = await store.get(key);
  // Inputs are immutable and referenced by digest: a missing one will not come back by retrying.
  if (!o) throw new LoraEdgeError('input_missing', `${key} is missing from storage`, { file: key });
  return new Uint8Array(await o.arrayBuffer());
}

/** Maps a sub-task's 0…1 onto [from, to] of the job's progress. */
export function span(report: Report, from: number, to: number): Report {
  return (f, stage) => report(from + (to - from) * f, stage);
}

export async function buildArtifact(store: ObjectStore, p: MergePayload, report: Report, opts: { fuse?: FuseFn } = {}): Promise<JobResult> {
  const key = p.recipe_key;
  const done = await readArtifactManifest(store, key);
  if (done) return { artifact: key, files: done.files.map((f) => f.name), reused: true };

  await report(0.02, 'loading inputs');
  const configText = new TextDecoder().decode(await getBytes(store, modelKey(p.base.digest, MODEL_CONFIG_FILE)));
  const modelConfig = parseModelConfig(configText, modelKey(p.base.digest, MODEL_CONFIG_FILE));
  const inputs: MergeInput[] = [];
  for (const a of p.adapters) {
    const configFile = adapterKey(a.tenant, a.name, a.digest, ADAPTER_CONFIG_FILE);
    const weightsFile = adapterKey(a.tenant, a.name, a.digest, ADAPTER_WEIGHTS_FILE);
    const adapter = loadLoraAdapter({
      configText: new TextDecoder().decode(await getBytes(store, configFile)),
      weights: await getBytes(store, weightsFile),
      configFile,
      weightsFile,
    });
    fitAdapterToModel(adapter, modelConfig, weightsFile);
    inputs.push({ id: a.id, digest: a.digest, weight: a.weight, adapter });
  }
  const { recipe } = p;
  const about = {
    recipe_key: key,
    base: p.base,
    adapters: p.adapters.map((a) => ({ adapter: a.id, weight: a.weight, digest: a.digest, peft_type: a.peft_type })),
    method: recipe.method,
    options: recipe.options,
    output: recipe.output,
  };

  let files: ArtifactInput[];
  let spec: Record<string, unknown>;
  if (recipe.output === 'adapter') {
    const merged = await mergeModules(inputs, recipe.method, recipe.options, span(report, 0.1, 0.85));
    const maxDiscarded = Math.max(0, ...merged.modules.map((m) => m.result.discardedSpectrum ?? 0));
    spec = { op: 'merge', ...about, semantics: merged.semantics, warnings: merged.warnings, max_discarded_frobenius: maxDiscarded };
    const out = mergedAdapterFiles(merged.modules, (inputs[0] as MergeInput).adapter, spec);
    spec.rank = out.rank;
    files = [
      { name: ADAPTER_CONFIG_FILE, data: `${JSON.stringify(out.config, null, 2)}\n`, contentType: 'application/json' },
      { name: ADAPTER_WEIGHTS_FILE, data: out.weights, contentType: 'application/octet-stream' },
    ];
  } else {
    let terms: Map<string, DeltaTerm[]>;
    let warnings: string[] = [];
    let semantics: string;
    if (fusesExactSum(recipe)) {
      // W + Σ w_i·s_i·B_i·A_i (DoRA at weight 1 included): `lora-edge fuse`, and unmerged serving.
      terms = mixTerms(inputs.map((i) => ({ name: i.id, adapter: i.adapter, weight: i.weight })));
      semantics = 'exact';
    } else {
      const merged = await mergeModules(inputs, recipe.method, recipe.options, span(report, 0.1, 0.4));
      terms = new Map(
        merged.modules.map((m) => [m.module, [{ A: m.result.lora_A, B: m.result.lora_B, r: m.result.rank, scale: 1, source: 'merged' }]]),
      );
      warnings = merged.warnings;
      semantics = merged.semantics;
    }
    const nf4 =
      recipe.output === 'fused-nf4'
        ? { blocksize: recipe.options.blocksize ?? 64, doubleQuant: recipe.options.double_quant ?? false }
        : undefined;
    spec = { op: 'fuse', ...about, semantics, warnings };
    if (nf4) spec.nf4 = nf4;
    await report(0.42, 'loading the base model');
    const modelBytes = await getBytes(store, modelKey(p.base.digest, MODEL_WEIGHTS_FILE));
    const out = await fusedModelFiles(
      modelBytes,
      configText,
      terms,
      { lora_edge: JSON.stringify(spec) },
      nf4,
      span(report, 0.45, 0.9),
      opts.fuse,
    );
    spec.fused_tensors = out.fused.length;
    files = out.files;
  }
  await report(0.92, 'writing the artifact');
  const manifest = await writeArtifact(store, key, recipe.output, files, spec);
  return { artifact: key, files: manifest.files.map((f) => f.name), semantics: String(spec.semantics) };
}
