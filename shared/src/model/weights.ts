import { LoraEdgeError } from '../errors.ts';
import type { TensorInfo } from '../safetensors/header.ts';
import { isFloatDType } from '../tensor/dtype.ts';
import type { ModelConfig } from './config.ts';

/** The linear projections of a decoder layer: where LoRA adapters attach. */
export const ATTENTION_PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const;
export const MLP_PROJECTIONS = ['gate_proj', 'up_proj', 'down_proj'] as const;
export const PROJECTIONS = [...ATTENTION_PROJECTIONS, ...MLP_PROJECTIONS] as const;
export type Projection = (typeof PROJECTIONS)[number];

export interface ExpectedTensor {
  name: string;
  shape: number[];
  /** Required unless tied or optional (lm_head of a tied model). */
  optional?: boolean;
}

/** Module path of a projection, as PEFT and transformers name it. */
export function projectionModule(layer: number, proj: Projection): string {
  const block = (MLP_PROJECTIONS as readonly string[]).includes(proj) ? 'mlp' : 'self_attn';
  return `model.layers.${layer}.${block}.${proj}`;
}

/** [out_features, in_features] of a linear module in this model, or undefined if it has none. */
export function linearShape(config: ModelConfig, module: string): [number, number] | undefined {
  const h = config.hiddenSize;
  const q = config.numHeads * config.headDim;
  const kv = config.numKvHeads * config.headDim;
  const i = config.intermediateSize;
  if (module === 'lm_head') return [config.vocabSize, h];
  const m = /^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)$/.exec(module);
  if (!m || Number(m[1]) >= config.numLayers) return undefined;
  const shapes: Record<string, [number, number]> = {
    'self_attn.q_proj': [q, h],
    'self_attn.k_proj': [kv, h],
    'self_attn.v_proj': [kv, h],
    'self_attn.o_proj': [h, q],
    'mlp.gate_proj': [i, h],
    'mlp.up_proj': [i, h],
    'mlp.down_proj': [h, i],
  };
  return shapes[`${m[2]}.${m[3]}`];
}

/** Every tensor a checkpoint of this config holds, with its shape. */
export function expectedTensors(config: ModelConfig): ExpectedTensor[] {
  const h = config.hiddenSize;
  const out: ExpectedTensor[] = [{ name: 'model.embed_tokens.weight', shape: [config.vocabSize, h] }];
  for (let l = 0; l < config.numLayers; l++) {
    out.push({ name: `model.layers.${l}.input_layernorm.weight`, shape: [h] });
    out.push({ name: `model.layers.${l}.post_attention_layernorm.weight`, shape: [h] });
    for (const p of PROJECTIONS) {
      const module = projectionModule(l, p);
      const shape = linearShape(config, module) as [number, number];
      out.push({ name: `${module}.weight`, shape });
      const isQkv = p === 'q_proj' || p === 'k_proj' || p === 'v_proj';
      const bias = isQkv ? config.qkvBias : p === 'o_proj' ? config.oBias : config.mlpBias;
      if (bias) out.push({ name: `${module}.bias`, shape: [shape[0]] });
    }
  }
  out.push({ name: 'model.norm.weight', shape: [h] });
  out.push({ name: 'lm_head.weight', shape: [config.vocabSize, h], optional: config.tieWordEmbeddings });
  return out;
}

export interface WeightProblem {
  tensor: string;
  problem: string;
}

/** Suffixes of lora-edge / bitsandbytes NF4 companions: the base tensor then is U8 packed codes. */
const NF4_SUFFIXES = ['.absmax', '.quant_map', '.nested_absmax', '.nested_quant_map', '.quant_state.bitsandbytes__nf4'];

/**
 * Checks a checkpoint's tensors against the config: every tensor present, shape and dtype
 * right, tied embeddings consistent. Returns every problem found (empty when valid).
 */
export function checkWeights(config: ModelConfig, tensors: ReadonlyMap<string, Pick<TensorInfo, 'dtype' | 'shape'>>): WeightProblem[] {
  const problems: WeightProblem[] = [];
  const expected = expectedTensors(config);
  const known = new Set(expected.map((e) => e.name));
  for (const e of expected) {
    const t = tensors.get(e.name);
    if (!t) {
      if (!e.optional) problems.push({ tensor: e.name, problem: 'missing' });
      continue;
    }
    if (tensors.has(`${e.name}.quant_state.bitsandbytes__nf4`)) continue; // NF4: shape lives in the quant state
    if (!isFloatDType(t.dtype)) {
      problems.push({ tensor: e.name, problem: `dtype ${t.dtype} is not a floating type` });
      continue;
    }
    if (t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) {
      problems.push({ tensor: e.name, problem: `shape [${t.shape}] but the config implies [${e.shape}]` });
    }
  }
  for (const name of tensors.keys()) {
    if (known.has(name) || NF4_SUFFIXES.some((s) => name.endsWith(s) && known.has(name.slice(0, -s.length)))) continue;
    if (name.endsWith('.rotary_emb.inv_freq')) continue; // older checkpoints save this buffer
    problems.push({ tensor: name, problem: 'not part of this architecture' });
  }
  return problems;
}

/** checkWeights, throwing the first problem as a LoraEdgeError. */
export function assertWeights(config: ModelConfig, tensors: ReadonlyMap<string, Pick<TensorInfo, 'dtype' | 'shape'>>, file?: string): void {
  const problems = checkWeights(config, tensors);
  const first = problems[0];
  if (first) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problems)` : '';
    throw new LoraEdgeError('model_weights_invalid', `${first.problem}${more}`, { file, tensor: first.tensor });
  }
}
