import { copyFileSync, existsSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { openModelDir, openSafetensors, type SafetensorsSource, SpoolWriter } from '@lora-edge/gpu-runner';
import { dequantizeNf4Tensor, fromBnbTensors, QUANT_STATE_SUFFIX, SHARD_INDEX_FILE } from '@lora-edge/shared';
import { UsageError } from '../errors.ts';
import { writeDirAtomically, writeFileAtomically } from '../output-dir.ts';
import { type Progress, progressBar } from '../progress.ts';
import { COMPANION_FILES } from './fuse.ts';

export const DEQUANTIZE_HELP = `Usage: lora-edge dequantize <model-dir | file.safetensors> --out <path>

Turns NF4 tensors in bitsandbytes' layout back into their recorded dtype (f32, f16 or bf16);
everything else is copied. A model folder loses its quantization_config.

Options:
  --out <path>  output folder (model) or file
  --force       replace an existing output
  --quiet       no progress output`;

const COMPANIONS = ['.absmax', '.quant_map', '.nested_absmax', '.nested_quant_map', `.${QUANT_STATE_SUFFIX}`];

function dequantizeSource(src: SafetensorsSource, spool: SpoolWriter, bar: Progress): number {
  const quantized = new Set(
    src.header.tensors.filter((t) => t.name.endsWith(`.${QUANT_STATE_SUFFIX}`)).map((t) => t.name.slice(0, -QUANT_STATE_SUFFIX.length - 1)),
  );
  const isCompanion = (name: string) => COMPANIONS.some((s) => name.endsWith(s) && quantized.has(name.slice(0, -s.length)));
  const get = (name: string) => {
    const info = src.header.byName.get(name);
    return info ? src.read(info) : undefined;
  };
  for (const info of [...src.header.tensors].sort((a, b) => a.begin - b.begin)) {
    bar.advance(info.end - info.begin);
    if (isCompanion(info.name)) continue;
    if (quantized.has(info.name)) spool.add(info.name, dequantizeNf4Tensor(fromBnbTensors(get, info.name)));
    else spool.add(info.name, src.read(info));
  }
  return quantized.size;
}

export async function dequantize(opts: {
  input: string;
  out: string;
  force?: boolean;
  quiet?: boolean;
}): Promise<{ out: string; tensors: number }> {
  if (!opts.input) throw new UsageError('dequantize needs a <model-dir | file.safetensors>');
  if (!opts.out) throw new UsageError('dequantize needs --out <path>');
  let tensors = 0;
  if (statSync(opts.input).isDirectory()) {
    const model = openModelDir(opts.input);
    try {
      const bar = progressBar(
        'dequantize',
        model.files.reduce((s, f) => s + f.header.fileSize, 0),
        { quiet: opts.quiet, unit: 'bytes' },
      );
      await writeDirAtomically(opts.out, opts.force ?? false, (dir) => {
        const weightMap: Record<string, string> = {};
        for (const src of model.files) {
          const spool = new SpoolWriter(join(dir, basename(src.path)));
          try {
            tensors += dequantizeSource(src, spool, bar);
            for (const n of spool.names()) weightMap[n] = basename(src.path);
            spool.finish({ metadata: { format: 'pt' } });
          } catch (e) {
            spool.abort();
            throw e;
          }
        }
        const config = JSON.parse(model.configText) as Record<string, unknown>;
        delete config.quantization_config;
        writeFileSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
        if (model.sharded)
          writeFileSync(join(dir, SHARD_INDEX_FILE), `${JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 2)}\n`);
        for (const f of COMPANION_FILES) if (existsSync(join(model.dir, f))) copyFileSync(join(model.dir, f), join(dir, f));
      });
      bar.done();
    } finally {
      model.close();
    }
    return { out: opts.out, tensors };
  }
  const src = openSafetensors(opts.input);
  try {
    const bar = progressBar('dequantize', src.header.fileSize, { quiet: opts.quiet, unit: 'bytes' });
    await writeFileAtomically(opts.out, opts.force ?? false, (tmp) => {
      const spool = new SpoolWriter(tmp);
      try {
        tensors = dequantizeSource(src, spool, bar);
        spool.finish({ metadata: { format: 'pt' } });
      } catch (e) {
        spool.abort();
        throw e;
      }
    });
    bar.done();
    return { out: opts.out, tensors };
  } finally {
    src.close();
  }
}
