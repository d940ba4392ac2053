import {
  type DeltaTerm,
  fromFloat32,
  LoraEdgeError,
  type ModelConfig,
  PROJECTIONS,
  type Projection,
  projectionModule,
  type Tensor,
  toFloat32,
} from '@lora-edge/shared';
import type { Backend, WeightHandle, WeightInit } from '../backend/types.ts';
import { fuseModuleNative } from './fuse.ts';

/** Reads one tensor of a checkpoint by name (a file, R2, memory...). NF4 weights come as their bitsandbytes companions. */
export interface TensorSource {
  config: ModelConfig;
  get(name: string): Tensor | undefined;
}

/** Turns a checkpoint tensor (and, for NF4, its companions) into a backend weight. Set by the NF4 loader. */
export type WeightDecoder = (source: TensorSource, name: string) => WeightInit | undefined;

export interface RunnerLayer {
  inputNorm: Float32Array;
  postNorm: Float32Array;
  proj: Record<Projection, WeightHandle>;
  bias: Partial<Record<Projection, Float32Array>>;
}

/** The weights of a decoder as the engine runs them: projections in the backend, the rest in f32. */
export interface RunnerModel {
  config: ModelConfig;
  backend: Backend;
  embed: Float32Array;
  layers: RunnerLayer[];
  norm: Float32Array;
  lmHead: WeightHandle;
  /** Bytes the backend holds for this model's own weights (shared weights of a merged variant not counted). */
  ownedBytes: number;
}

const WEIGHT_DTYPES: Record<string, WeightInit['dtype'] | undefined> = { F32: 'f32', BF16: 'bf16', F16: 'f16' };

function bytesOf(init: WeightInit): number {
  return init.data.byteLength + (init.nf4?.absmax.byteLength ?? 0);
}

/** The backend form of a dense checkpoint weight; other dtypes go through `decoders` (NF4). */
export function denseWeight(t: Tensor, name: string): WeightInit {
  const dtype = WEIGHT_DTYPES[t.dtype];
  if (!dtype || t.shape.length !== 2) {
    throw new LoraEdgeError('model_weights_invalid', `cannot run a ${t.dtype} weight of shape [${t.shape}]`, { tensor: name });
  }
  const [out, inF] = t.shape as [number, number];
  const data = dtype === 'f32' ? toFloat32(t, { copy: true }) : new Uint16Array(t.data.slice().buffer);
  return { dtype, out, in: inF, data };
}

export interface LoadOptions {
  decoders?: readonly WeightDecoder[];
}

function weightInit(source: TensorSource, name: string, opts: LoadOptions): WeightInit {
  for (const d of opts.decoders ?? []) {
    const w = d(source, name);
    if (w) return w;
  }
  const t = source.get(name);
  if (!t) throw new LoraEdgeError('model_weights_invalid', 'missing', { tensor: name });
  return denseWeight(t, name);
}

function f32(source: TensorSource, name: string): Float32Array {
  const t = source.get(name);
  if (!t) throw new LoraEdgeError('model_weights_invalid', 'missing', { tensor: name });
  return toFloat32(t, { copy: true });
}

export function loadRunnerModel(backend: Backend, source: TensorSource, opts: LoadOptions = {}): RunnerModel {
  const c = source.config;
  let ownedBytes = 0;
  const create = (name: string) => {
    const init = weightInit(source, name, opts);
    ownedBytes += bytesOf(init);
    return backend.createWeight(init);
  };
  const layers: RunnerLayer[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const proj = {} as Record<Projection, WeightHandle>;
    const bias: Partial<Record<Projection, Float32Array>> = {};
    for (const p of PROJECTIONS) {
      const module = projectionModule(l, p);
      proj[p] = create(`${module}.weight`);
      const b = source.get(`${module}.bias`);
      if (b) bias[p] = toFloat32(b, { copy: true });
    }
    layers.push({
      inputNorm: f32(source, `model.layers.${l}.input_layernorm.weight`),
      postNorm: f32(source, `model.layers.${l}.post_attention_layernorm.weight`),
      proj,
      bias,
    });
  }
  const embedInit = weightInit(source, 'model.embed_tokens.weight', opts);
  const embed = embedFloat32(embedInit);
  // Tied models read logits through the embedding table itself.
  const lmHead = source.get('lm_head.weight') ? create('lm_head.weight') : backend.createWeight(embedInit);
  ownedBytes += embed.byteLength;
  return { config: c, backend, embed, layers, norm: f32(source, 'model.norm.weight'), lmHead, ownedBytes };
}

/** The embedding table in f32 for row gathers (decoded once; a bf16 or NF4 table is expanded). */
function embedFloat32(init: WeightInit): Float32Array {
  if (init.dtype === 'f32') return init.data as Float32Array;
  if (init.dtype === 'nf4') {
    const { blocksize, absmax, quantMap } = init.nf4!;
    const codes = init.data as Uint8Array;
    const out = new Float32Array(init.out * init.in);
    for (let i = 0; i < out.length; i++) {
      const byte = codes[i >> 1] as number;
      const code = i & 1 ? byte & 15 : byte >> 4;
      out[i] = (quantMap[code] as number) * (absmax[Math.floor(i / blocksize)] as number);
    }
    return out;
  }
  const bytes = new Uint8Array(init.data.buffer, init.data.byteOffset, init.data.byteLength);
  return toFloat32({ dtype: init.dtype === 'bf16' ? 'BF16' : 'F16', shape: [init.out, init.in], data: bytes });
}

/**
 * A merged variant: the fused projections get new backend weights in the base's dtype (fused
 * in full precision first, rounded once); every other weight is shared with the base.
 * NF4 bases are refused here: fuse then quantize offline (`lora-edge fuse --nf4`).
 */
export function mergedVariant(base: RunnerModel, source: TensorSource, terms: ReadonlyMap<string, DeltaTerm[]>): RunnerModel {
  let ownedBytes = 0;
  const layers = base.layers.map((layer, l) => {
    const proj = { ...layer.proj };
    for (const p of PROJECTIONS) {
      const module = projectionModule(l, p);
      const t = terms.get(module);
      if (!t?.length) continue;
      const w = source.get(`${module}.weight`);
      if (!w || !WEIGHT_DTYPES[w.dtype]) {
        throw new LoraEdgeError(
          'adapter_unsupported',
          `cannot merge into ${module}: its weight is not dense f32/f16/bf16 (use lora-edge fuse --nf4 offline)`,
        );
      }
      const [out, inF] = w.shape as [number, number];
      const fused = fromFloat32(fuseModuleNative(toFloat32(w), out, inF, t), w.dtype, w.shape);
      const init = denseWeight(fused, `${module}.weight`);
      ownedBytes += bytesOf(init);
      proj[p] = base.backend.createWeight(init);
    }
    return { ...layer, proj };
  });
  return { ...base, layers, ownedBytes };
}

/** Releases what a model owns in the backend (a merged variant releases only its fused weights). */
export function releaseModel(m: RunnerModel, base?: RunnerModel): void {
  if (!m.backend.release) return;
  m.layers.forEach((layer, l) => {
    for (const p of PROJECTIONS) if (!base || base.layers[l]?.proj[p] !== layer.proj[p]) m.backend.release?.(layer.proj[p]);
  });
  if (!base) m.backend.release(m.lmHead);
}
