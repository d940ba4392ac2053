/**
 * Fused models in the CLI's formats: `lora-edge fuse` (config.json + model.safetensors, same
 * dtypes, untouched tensors copied bit for bit) and `fuse --nf4` (linear weights fused in full
 * precision, then quantized once to bitsandbytes NF4).
 */
import { LoraEdgeError } from '../errors.ts';
import { type DeltaTerm, fuseModule } from '../lora/index.ts';
import { bnbQuantizationConfig, isQuantizedLinear, quantizeNf4, toBnbTensors } from '../nf4/index.ts';
import { type NamedTensor, readSafetensors, serializeSafetensors } from '../safetensors/index.ts';
import { type ArtifactInput, MODEL_CONFIG_FILE, MODEL_WEIGHTS_FILE } from '../storage/index.ts';
import { fromFloat32, type Tensor, toFloat32 } from '../tensor/index.ts';
import type { Report } from './merge-adapter.ts';

export interface Nf4Settings {
  blocksize: number;
  doubleQuant: boolean;
}

/** How one module's terms are fused: shared's fuseModule, or a faster one where the host has it. */
export type FuseFn = (W: Float32Array, out: number, inF: number, terms: readonly DeltaTerm[]) => Float32Array;

export async function fusedModelFiles(
  modelBytes: Uint8Array,
  configText: string,
  terms: ReadonlyMap<string, DeltaTerm[]>,
  metadata: Record<string, string>,
  nf4: Nf4Settings | undefined,
  report: Report,
  fuse: FuseFn = fuseModule,
): Promise<{ files: ArtifactInput[]; fused: string[] }> {
  const model = readSafetensors(modelBytes);
  for (const module of terms.keys()) {
    if (!model.header.byName.has(`${module}.weight`))
      throw new LoraEdgeError('adapter_base_mismatch', `the base model has no ${module}.weight`);
  }
  const order = [...model.header.tensors].sort((a, b) => a.begin - b.begin);
  const out: NamedTensor[] = [];
  const fused: string[] = [];
  let computeDtype = 'F32';
  for (const [i, info] of order.entries()) {
    const raw = model.tensor(info.name);
    const moduleTerms = info.name.endsWith('.weight') ? terms.get(info.name.slice(0, -'.weight'.length)) : undefined;
    let t: Tensor = raw;
    if (moduleTerms) {
      const [rows, cols] = raw.shape as [number, number];
      t = fromFloat32(fuse(toFloat32(raw), rows, cols, moduleTerms), raw.dtype, raw.shape);
      fused.push(info.name);
    }
    if (nf4 && isQuantizedLinear(info.name)) {
      computeDtype = t.dtype;
      out.push(...toBnbTensors(info.name, quantizeNf4(t, { blocksize: nf4.blocksize, doubleQuant: nf4.doubleQuant, name: info.name })));
    } else {
      out.push({ name: info.name, dtype: t.dtype, shape: t.shape, data: t.data });
    }
    if (moduleTerms || (nf4 && isQuantizedLinear(info.name)))
      await report((i + 1) / order.length, nf4 ? 'fusing and quantizing' : 'fusing');
  }
  const config = JSON.parse(configText) as Record<string, unknown>;
  let weights: Uint8Array;
  if (nf4) {
    config.quantization_config = bnbQuantizationConfig({ doubleQuant: nf4.doubleQuant, computeDtype });
    weights = serializeSafetensors(out, { metadata: { format: 'pt', ...metadata } });
  } else {
    weights = serializeSafetensors(out, {
      metadata: { ...(model.header.metadata ?? {}), ...metadata },
      headerOrder: model.header.tensors.map((t) => t.name),
    });
  }
  return {
    files: [
      { name: MODEL_CONFIG_FILE, data: `${JSON.stringify(config, null, 2)}\n`, contentType: 'application/json' },
      { name: MODEL_WEIGHTS_FILE, data: weights, contentType: 'application/octet-stream' },
    ],
    fused,
  };
}
