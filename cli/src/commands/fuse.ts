import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, existsSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fuseModuleNative, openModelDir, readAdapterFiles } from '@lora-edge/gpu-runner';
import {
  assertWeights,
  checkBlocksize,
  type DeltaTerm,
  type DType,
  fitAdapterToModel,
  fromFloat32,
  isFloatDType,
  isQuantizedLinear,
  LoraEdgeError,
  loadLoraAdapter,
  mixTerms,
  SHARD_INDEX_FILE,
  streamSafetensors,
  type Tensor,
  type TensorSpec,
  toFloat32,
} from '@lora-edge/shared';
import { parseAdapterArg } from '../adapter-arg.ts';
import { UsageError } from '../errors.ts';
import { writeDirAtomically } from '../output-dir.ts';
import { progressBar } from '../progress.ts';
import { writeQuantizedModel } from './quantize.ts';

export const FUSE_HELP = `Usage: lora-edge fuse --model <dir> --adapter <dir>[:weight] [--adapter ...] --out <dir> [options]

Fuses one or several weighted LoRA adapters into the base model (PEFT's merge_and_unload):
W' = W + Σ w_i·s_i·B_i·A_i (DoRA: PEFT's magnitude-normalised merge). Writes a complete
Hugging Face model folder (config.json + safetensors, sharded like the input, tokenizer files
copied). Tensors no adapter touches are copied bit for bit.

Options:
  --model <dir>           base model folder (config.json + model.safetensors or a sharded index)
  --adapter <dir>[:w]     PEFT adapter folder; the weight follows the last colon (default 1, may be negative)
  --out <dir>             output folder (written atomically)
  --dtype <f32|f16|bf16>  dtype of the written floating tensors (default: as the input)
  --nf4                   then quantize the linear weights to NF4 (bitsandbytes layout): fused in
                          full precision, quantized once
  --double-quant          with --nf4: 8-bit quantize the absmax values too
  --blocksize <n>         with --nf4: elements per absmax block (default 64)
  --force                 replace a non-empty --out
  --quiet                 no progress output`;

const DTYPE_NAMES: Record<string, DType> = { f32: 'F32', float32: 'F32', f16: 'F16', float16: 'F16', bf16: 'BF16', bfloat16: 'BF16' };
const TORCH_DTYPE: Record<string, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };
/** Files beside the weights that a model folder keeps (tokenizer, generation defaults, license). */
export const COMPANION_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'tokenizer.model',
  'vocab.json',
  'merges.txt',
  'added_tokens.json',
  'generation_config.json',
  'chat_template.jinja',
  'LICENSE',
];

export interface FuseOptions {
  model: string;
  adapters: string[];
  out: string;
  dtype?: string;
  force?: boolean;
  quiet?: boolean;
  nf4?: boolean;
  doubleQuant?: boolean;
  blocksize?: string;
}

export interface FuseResult {
  out: string;
  fusedTensors: string[];
  copiedTensors: number;
}

export async function fuse(opts: FuseOptions): Promise<FuseResult> {
  if (!opts.model) throw new UsageError('fuse needs --model <dir>');
  if (!opts.out) throw new UsageError('fuse needs --out <dir>');
  if (opts.adapters.length === 0) throw new UsageError('fuse needs at least one --adapter <dir>[:weight]');
  const outDtype = opts.dtype === undefined ? undefined : DTYPE_NAMES[opts.dtype.toLowerCase()];
  if (opts.dtype !== undefined && !outDtype) throw new UsageError(`--dtype ${opts.dtype}: use f32, f16 or bf16`);

  const model = openModelDir(opts.model);
  try {
    assertWeights(model.config, new Map([...model.tensors].map(([n, t]) => [n, t.info])), model.dir);
    const recipe: { adapter: string; weight: number; sha256: string }[] = [];
    const mix = opts.adapters.map((arg) => {
      const { dir, weight } = parseAdapterArg(arg);
      const files = readAdapterFiles(dir);
      const adapter = loadLoraAdapter(files);
      fitAdapterToModel(adapter, model.config, files.weightsFile);
      recipe.push({ adapter: dir, weight, sha256: createHash('sha256').update(files.weights).digest('hex') });
      return { name: dir, adapter, weight };
    });
    const terms = mixTerms(mix);
    for (const module of terms.keys()) {
      if (!model.tensors.has(`${module}.weight`))
        throw new LoraEdgeError('adapter_base_mismatch', `the base model has no ${module}.weight`);
    }
    const metadata = { format: 'pt', lora_edge: JSON.stringify({ op: 'fuse', semantics: 'peft', adapters: recipe }) };
    const totalBytes = [...model.tensors.values()].reduce((s, t) => s + t.info.end - t.info.begin, 0);
    const bar = progressBar('fuse', totalBytes, { quiet: opts.quiet, unit: 'bytes' });
    const fused: string[] = [];
    let copied = 0;
    let writtenBytes = 0;

    if (opts.nf4) {
      // Fuse in full precision, quantize once: dequantize -> add -> requantize would lose quality.
      const q = {
        blocksize: checkBlocksize(opts.blocksize === undefined ? 64 : Number(opts.blocksize), 'blocksize'),
        doubleQuant: opts.doubleQuant ?? false,
      };
      const quantized: string[] = [];
      const fuseOne = (name: string, t: Tensor): Tensor => {
        const moduleTerms = name.endsWith('.weight') ? terms.get(name.slice(0, -'.weight'.length)) : undefined;
        if (!moduleTerms) {
          copied++;
          return t;
        }
        fused.push(name);
        return fuseTensor(t, moduleTerms, outDtype && isFloatDType(t.dtype) ? outDtype : t.dtype);
      };
      const nf4Metadata = { lora_edge: JSON.stringify({ op: 'fuse', semantics: 'peft', adapters: recipe, nf4: q }) };
      await writeDirAtomically(opts.out, opts.force ?? false, (tmp) => {
        writeQuantizedModel(model, tmp, isQuantizedLinear, q, bar, quantized, fuseOne, nf4Metadata);
      });
      bar.done();
      return { out: opts.out, fusedTensors: fused, copiedTensors: copied };
    }

    await writeDirAtomically(opts.out, opts.force ?? false, async (tmp) => {
      for (const source of model.files) {
        const order = [...source.header.tensors].sort((a, b) => a.begin - b.begin);
        const specs: TensorSpec[] = order.map((t) => ({
          name: t.name,
          dtype: outDtype && isFloatDType(t.dtype) ? outDtype : t.dtype,
          shape: t.shape,
        }));
        const fileName = source.path.slice(source.path.lastIndexOf('/') + 1);
        const fd = openSync(join(tmp, fileName), 'w');
        try {
          const stream = streamSafetensors(
            specs,
            function* (spec, i) {
              const info = order[i]!;
              const raw = source.read(info);
              const module = spec.name.endsWith('.weight') ? spec.name.slice(0, -'.weight'.length) : undefined;
              const moduleTerms = module === undefined ? undefined : terms.get(module);
              let t: Tensor;
              if (moduleTerms) {
                t = fuseTensor(raw, moduleTerms, spec.dtype);
                fused.push(spec.name);
              } else if (spec.dtype === raw.dtype) {
                t = raw; // untouched: bit for bit
                copied++;
              } else {
                t = fromFloat32(toFloat32(raw), spec.dtype, spec.shape);
                copied++;
              }
              bar.advance(info.end - info.begin);
              writtenBytes += t.data.byteLength;
              yield t.data;
            },
            { metadata: { ...(source.header.metadata ?? {}), ...metadata }, headerOrder: source.header.tensors.map((t) => t.name) },
          );
          for await (const chunk of stream) writeSync(fd, chunk);
        } finally {
          closeSync(fd);
        }
      }
      if (model.sharded) {
        // Same shard layout; total_size follows the written dtype.
        const index = JSON.parse(readFileSync(join(model.dir, SHARD_INDEX_FILE), 'utf8')) as { metadata?: Record<string, unknown> };
        index.metadata = { ...(index.metadata ?? {}), total_size: writtenBytes };
        writeFileSync(join(tmp, SHARD_INDEX_FILE), `${JSON.stringify(index, null, 2)}\n`);
      }
      const config = JSON.parse(model.configText) as Record<string, unknown>;
      if (outDtype) config.torch_dtype = TORCH_DTYPE[outDtype];
      writeFileSync(join(tmp, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
      for (const f of COMPANION_FILES) if (existsSync(join(model.dir, f))) copyFileSync(join(model.dir, f), join(tmp, f));
    });
    bar.done();
    return { out: opts.out, fusedTensors: fused, copiedTensors: copied };
  } finally {
    model.close();
  }
}

function fuseTensor(raw: Tensor, terms: DeltaTerm[], dtype: DType): Tensor {
  const [out, inF] = raw.shape as [number, number];
  return fromFloat32(fuseModuleNative(toFloat32(raw), out, inF, terms), dtype, raw.shape);
}
