import { copyFileSync, existsSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { type ModelDir, openModelDir, openSafetensors, type SafetensorsSource, SpoolWriter } from '@lora-edge/gpu-runner';
import {
  bnbQuantizationConfig,
  checkBlocksize,
  isFloatDType,
  isQuantizedLinear,
  LoraEdgeError,
  QUANT_STATE_SUFFIX,
  quantizeNf4,
  SHARD_INDEX_FILE,
  type Tensor,
  toBnbTensors,
} from '@lora-edge/shared';
import { UsageError } from '../errors.ts';
import { writeDirAtomically, writeFileAtomically } from '../output-dir.ts';
import { type Progress, progressBar } from '../progress.ts';
import { COMPANION_FILES } from './fuse.ts';

export const QUANTIZE_HELP = `Usage: lora-edge quantize <model-dir | file.safetensors> --out <path> [--double-quant] [--blocksize 64] [--tensors a,b]

NF4 (QLoRA) quantization, byte-compatible with bitsandbytes.
- A model folder: the decoder's linear weights become NF4 in bitsandbytes' layout; norms,
  embeddings and lm_head keep their dtype; config.json gains the quantization_config that
  transformers expects for bnb 4-bit. The output is a model folder.
- A .safetensors file: every floating tensor with two or more dimensions (or those named by
  --tensors) is quantized; the output is one file.

Tensors written per quantized weight W: W (packed U8), W.absmax, W.quant_map,
W.nested_absmax and W.nested_quant_map (with --double-quant), W.${QUANT_STATE_SUFFIX}.

Options:
  --out <path>      output folder (model) or file
  --double-quant    8-bit quantize the absmax values too (bitsandbytes compress_statistics)
  --blocksize <n>   elements per absmax block: a power of two from 32 to 4096 (default 64)
  --tensors <list>  comma-separated tensor names to quantize (file mode)
  --force           replace an existing output
  --quiet           no progress output`;

export interface QuantizeOptions {
  input: string;
  out: string;
  doubleQuant?: boolean;
  blocksize?: string;
  tensors?: string;
  force?: boolean;
  quiet?: boolean;
}

/** Spools the NF4 form of `t` under bitsandbytes' names. */
export function quantizeInto(spool: SpoolWriter, name: string, t: Tensor, opts: { blocksize: number; doubleQuant: boolean }): void {
  const q = quantizeNf4(t, { blocksize: opts.blocksize, doubleQuant: opts.doubleQuant, name });
  for (const b of toBnbTensors(name, q)) spool.add(b.name, b);
}

function quantizeSource(
  src: SafetensorsSource,
  spool: SpoolWriter,
  pick: (name: string, t: Tensor) => boolean,
  opts: { blocksize: number; doubleQuant: boolean },
  bar: Progress,
): string[] {
  const done: string[] = [];
  for (const info of [...src.header.tensors].sort((a, b) => a.begin - b.begin)) {
    const t = src.read(info);
    if (pick(info.name, t)) {
      quantizeInto(spool, info.name, t, opts);
      done.push(info.name);
    } else spool.add(info.name, t);
    bar.advance(info.end - info.begin);
  }
  return done;
}

export async function quantize(opts: QuantizeOptions): Promise<{ out: string; quantized: string[] }> {
  if (!opts.input) throw new UsageError('quantize needs a <model-dir | file.safetensors>');
  if (!opts.out) throw new UsageError('quantize needs --out <path>');
  const blocksize = checkBlocksize(opts.blocksize === undefined ? 64 : Number(opts.blocksize), 'blocksize');
  const q = { blocksize, doubleQuant: opts.doubleQuant ?? false };
  if (statSync(opts.input).isDirectory()) return quantizeModel(opts, q);
  const src = openSafetensors(opts.input);
  try {
    const wanted = opts.tensors?.split(',').map((s) => s.trim());
    for (const n of wanted ?? [])
      if (!src.header.byName.has(n))
        throw new LoraEdgeError('safetensors_tensor_missing', 'no such tensor', { file: opts.input, tensor: n });
    const pick = (name: string, t: Tensor) => (wanted ? wanted.includes(name) : isFloatDType(t.dtype) && t.shape.length >= 2);
    const bar = progressBar('quantize', src.header.fileSize, { quiet: opts.quiet, unit: 'bytes' });
    let quantized: string[] = [];
    await writeFileAtomically(opts.out, opts.force ?? false, (tmp) => {
      const spool = new SpoolWriter(tmp);
      try {
        quantized = quantizeSource(src, spool, pick, q, bar);
        spool.finish({ metadata: { ...(src.header.metadata ?? {}), lora_edge: JSON.stringify({ op: 'quantize', nf4: q }) } });
      } catch (e) {
        spool.abort();
        throw e;
      }
    });
    bar.done();
    return { out: opts.out, quantized };
  } finally {
    src.close();
  }
}

async function quantizeModel(
  opts: QuantizeOptions,
  q: { blocksize: number; doubleQuant: boolean },
): Promise<{ out: string; quantized: string[] }> {
  const model = openModelDir(opts.input);
  try {
    const quantized: string[] = [];
    const total = model.files.reduce((s, f) => s + f.header.fileSize, 0);
    const bar = progressBar('quantize', total, { quiet: opts.quiet, unit: 'bytes' });
    await writeDirAtomically(opts.out, opts.force ?? false, (tmp) => {
      writeQuantizedModel(model, tmp, (name) => isQuantizedLinear(name), q, bar, quantized);
    });
    bar.done();
    return { out: opts.out, quantized };
  } finally {
    model.close();
  }
}

/** Writes `model` to folder `dir` with the picked weights in NF4, shard by shard, config and companions updated. */
export function writeQuantizedModel(
  model: ModelDir,
  dir: string,
  pick: (name: string) => boolean,
  q: { blocksize: number; doubleQuant: boolean },
  bar: Progress,
  quantized: string[],
  transform: (name: string, t: Tensor) => Tensor = (_, t) => t,
  metadata: Record<string, string> = { lora_edge: JSON.stringify({ op: 'quantize', nf4: q }) },
): void {
  const weightMap: Record<string, string> = {};
  let computeDtype = 'F32';
  for (const src of model.files) {
    const file = basename(src.path);
    const spool = new SpoolWriter(join(dir, file));
    try {
      for (const info of [...src.header.tensors].sort((a, b) => a.begin - b.begin)) {
        const t = transform(info.name, src.read(info));
        if (pick(info.name)) {
          computeDtype = t.dtype;
          quantizeInto(spool, info.name, t, q);
          quantized.push(info.name);
        } else spool.add(info.name, t);
        bar.advance(info.end - info.begin);
      }
      for (const n of spool.names()) weightMap[n] = file;
      spool.finish({ metadata: { format: 'pt', ...metadata } });
    } catch (e) {
      spool.abort();
      throw e;
    }
  }
  const config = JSON.parse(model.configText) as Record<string, unknown>;
  config.quantization_config = bnbQuantizationConfig({ doubleQuant: q.doubleQuant, computeDtype });
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  if (model.sharded) writeFileSync(join(dir, SHARD_INDEX_FILE), `${JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 2)}\n`);
  for (const f of COMPANION_FILES) if (existsSync(join(model.dir, f))) copyFileSync(join(model.dir, f), join(dir, f));
}
