import { statSync } from 'node:fs';
import { join } from 'node:path';
import { isAdapterDir, isModelDir, openModelDir, openSafetensors, readAdapterFiles } from '@lora-edge/gpu-runner';
import {
  ADAPTER_WEIGHTS_FILE,
  adapterParameterCount,
  checkWeights,
  fitAdapterToModel,
  isLoraEdgeError,
  type LoraModule,
  loadLoraAdapter,
  numel,
  parseAdapterConfig,
  readSafetensors,
  type TensorInfo,
  toFloat32,
} from '@lora-edge/shared';
import { UsageError } from '../errors.ts';

export const INSPECT_HELP = `Usage: lora-edge inspect <path> [--model <dir>] [--json]

Says what <path> is (a Hugging Face model folder, a PEFT adapter folder or a .safetensors
file), lists its tensors with dtype and shape, counts parameters, and reports every problem
found. Only headers are read for models and .safetensors files.

Options:
  --model <dir>  also check an adapter against this base model
  --json         print one JSON object instead of text
Exit code 2 when a problem is found.`;

export interface InspectReport {
  kind: 'model' | 'adapter' | 'safetensors';
  path: string;
  summary: Record<string, unknown>;
  tensors: { name: string; dtype: string; shape: number[] }[];
  parameters: number;
  bytes: number;
  problems: string[];
  notes: string[];
}

export function inspect(path: string, opts: { model?: string } = {}): InspectReport {
  if (!path) throw new UsageError('inspect needs a <path>');
  const st = statSync(path);
  if (st.isDirectory()) {
    if (isAdapterDir(path)) return inspectAdapter(path, opts.model);
    if (isModelDir(path)) return inspectModel(path);
    throw new UsageError(`${path} is neither a model folder (config.json + model.safetensors) nor an adapter folder (adapter_config.json)`);
  }
  return inspectFile(path);
}

function tensorRows(infos: readonly TensorInfo[]) {
  return infos.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape] }));
}

function totals(infos: readonly TensorInfo[]): { parameters: number; bytes: number } {
  return { parameters: infos.reduce((s, t) => s + numel(t.shape), 0), bytes: infos.reduce((s, t) => s + t.end - t.begin, 0) };
}

function dtypeHistogram(infos: readonly TensorInfo[]): Record<string, number> {
  const h: Record<string, number> = {};
  for (const t of infos) h[t.dtype] = (h[t.dtype] ?? 0) + 1;
  return h;
}

function inspectModel(dir: string): InspectReport {
  const m = openModelDir(dir);
  try {
    const infos = [...m.tensors.values()].map((t) => t.info);
    const c = m.config;
    const problems = checkWeights(c, new Map(infos.map((t) => [t.name, t]))).map((p) => `${p.tensor}: ${p.problem}`);
    const quantized = infos.some((t) => t.name.endsWith('.quant_state.bitsandbytes__nf4'));
    return {
      kind: 'model',
      path: dir,
      summary: {
        model_type: c.modelType,
        layers: c.numLayers,
        hidden_size: c.hiddenSize,
        intermediate_size: c.intermediateSize,
        heads: c.numHeads,
        kv_heads: c.numKvHeads,
        head_dim: c.headDim,
        vocab_size: c.vocabSize,
        max_positions: c.maxPositions,
        rope_theta: c.ropeTheta,
        tied_embeddings: c.tieWordEmbeddings,
        dtypes: dtypeHistogram(infos),
        files: m.files.map((f) => f.path.slice(dir.length + 1)),
        ...(quantized ? { quantization: 'nf4 (bitsandbytes layout)' } : {}),
      },
      tensors: tensorRows(infos),
      ...totals(infos),
      problems,
      notes: m.sharded ? [`sharded into ${m.files.length} files`] : [],
    };
  } finally {
    m.close();
  }
}

function inspectAdapter(dir: string, modelDir?: string): InspectReport {
  const files = readAdapterFiles(dir);
  const problems: string[] = [];
  const notes: string[] = [];
  const config = parseAdapterConfig(files.configText, files.configFile);
  let infos: TensorInfo[] = [];
  try {
    infos = readSafetensors(files.weights).header.tensors;
  } catch (e) {
    if (!isLoraEdgeError(e)) throw e;
    problems.push(e.at({ file: files.weightsFile }).message);
  }
  const summary: Record<string, unknown> = {
    peft_type: config.peft_type,
    base_model: config.base_model_name_or_path ?? null,
    target_modules: config.target_modules ?? null,
  };
  let parameters = totals(infos).parameters;
  if (problems.length === 0) {
    try {
      const a = loadLoraAdapter(files);
      const mods = [...a.modules.values()];
      const ranks = [...new Set(mods.map((m) => m.r))].sort((x, y) => x - y);
      const scalings = [...new Set(mods.map((m) => Number(m.scaling.toPrecision(6))))];
      Object.assign(summary, { r: config.r, ranks, scalings, modules: a.modules.size });
      if (a.peftType === 'LORA') {
        Object.assign(summary, {
          lora_alpha: config.lora_alpha,
          use_rslora: config.use_rslora ?? false,
          use_dora: a.useDora,
          rank_pattern: config.rank_pattern ?? {},
          alpha_pattern: config.alpha_pattern ?? {},
        });
        const sparsity = bSparsity(mods);
        if (sparsity >= 0.8) notes.push(`lora_B is ${(sparsity * 100).toFixed(1)}% exact zeros (LoRI-style sparse adapter)`);
      } else if (a.peftType === 'VERA') {
        Object.assign(summary, { projection_prng_key: config.projection_prng_key, shared_projections: 'vera_A, vera_B (stored once)' });
      } else {
        Object.assign(summary, { init_r: config.init_r, target_r: config.target_r, lora_alpha: config.lora_alpha });
      }
      parameters = adapterParameterCount(a);
      notes.push(...a.warnings);
      if (modelDir) {
        const m = openModelDir(modelDir);
        try {
          fitAdapterToModel(a, m.config, join(dir, ADAPTER_WEIGHTS_FILE));
          notes.push(`fits the base model at ${modelDir}`);
        } finally {
          m.close();
        }
      }
    } catch (e) {
      if (!isLoraEdgeError(e)) throw e;
      problems.push(e.message);
    }
  }
  return { kind: 'adapter', path: dir, summary, tensors: tensorRows(infos), parameters, bytes: totals(infos).bytes, problems, notes };
}

/** Share of exact zeros over all lora_B factors. */
function bSparsity(mods: readonly LoraModule[]): number {
  let zeros = 0;
  let total = 0;
  for (const m of mods) {
    const b = toFloat32(m.B);
    for (let i = 0; i < b.length; i++) if (b[i] === 0) zeros++;
    total += b.length;
  }
  return total ? zeros / total : 0;
}

function inspectFile(path: string): InspectReport {
  const src = openSafetensors(path);
  try {
    const infos = src.header.tensors;
    const nf4 = infos.filter((t) => t.name.endsWith('.quant_state.bitsandbytes__nf4')).length;
    return {
      kind: 'safetensors',
      path,
      summary: {
        metadata: src.header.metadata ?? {},
        dtypes: dtypeHistogram(infos),
        header_bytes: src.header.headerLength,
        file_bytes: src.header.fileSize,
      },
      tensors: tensorRows(infos),
      ...totals(infos),
      problems: [],
      notes: nf4 ? [`${nf4} NF4-quantized tensors (bitsandbytes layout)`] : [],
    };
  } finally {
    src.close();
  }
}

function human(n: number): string {
  return n.toLocaleString('en-US');
}

export function formatReport(r: InspectReport): string {
  const lines: string[] = [];
  const what = { model: 'Hugging Face model folder', adapter: 'PEFT adapter folder', safetensors: 'safetensors file' }[r.kind];
  lines.push(`${r.path}: ${what}`);
  for (const [k, v] of Object.entries(r.summary))
    lines.push(`  ${k}: ${typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)}`);
  lines.push(`  parameters: ${human(r.parameters)} (${human(r.bytes)} bytes)`);
  lines.push(`tensors (${r.tensors.length}):`);
  const width = Math.max(0, ...r.tensors.map((t) => t.name.length));
  for (const t of r.tensors) lines.push(`  ${t.name.padEnd(width)}  ${t.dtype.padEnd(4)}  [${t.shape.join(', ')}]`);
  for (const n of r.notes) lines.push(`note: ${n}`);
  lines.push(r.problems.length ? `problems (${r.problems.length}):` : 'problems: none');
  for (const p of r.problems) lines.push(`  ${p}`);
  return lines.join('\n');
}
