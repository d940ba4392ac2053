import { z } from 'zod';
import { LoraEdgeError } from '../errors.ts';
import { parseJsonText, parseWith } from '../json.ts';

/** Llama-architecture model types we serve (SmolLM, TinyLlama and friends say "llama"). */
export const LLAMA_FAMILY = ['llama', 'mistral', 'qwen2'] as const;
export type ModelType = (typeof LLAMA_FAMILY)[number];

const posInt = z.number().int().positive();

/**
 * A Hugging Face config.json of the Llama family. Unknown fields pass (every transformers
 * release adds some); the fields the forward pass needs are required and checked.
 */
export const ModelConfigSchema = z
  .looseObject({
    model_type: z.string(),
    architectures: z.array(z.string()).optional(),
    hidden_size: posInt,
    intermediate_size: posInt,
    num_hidden_layers: posInt,
    num_attention_heads: posInt,
    num_key_value_heads: posInt.optional(),
    head_dim: posInt.nullish(),
    vocab_size: posInt,
    max_position_embeddings: posInt.optional(),
    rms_norm_eps: z.number().positive().optional(),
    rope_theta: z.number().positive().optional(),
    rope_scaling: z.looseObject({}).nullish(),
    hidden_act: z.string().optional(),
    attention_bias: z.boolean().optional(),
    mlp_bias: z.boolean().optional(),
    tie_word_embeddings: z.boolean().optional(),
    sliding_window: z.number().int().nullish(),
    bos_token_id: z.union([z.number().int(), z.array(z.number().int())]).nullish(),
    eos_token_id: z.union([z.number().int(), z.array(z.number().int())]).nullish(),
    torch_dtype: z.string().nullish(),
    quantization_config: z.looseObject({}).nullish(),
  })
  .superRefine((c, ctx) => {
    if (!(LLAMA_FAMILY as readonly string[]).includes(c.model_type)) {
      ctx.addIssue({
        code: 'custom',
        path: ['model_type'],
        message: `model_type "${c.model_type}" is not in the Llama family (${LLAMA_FAMILY.join(', ')})`,
      });
    }
    const kv = c.num_key_value_heads ?? c.num_attention_heads;
    if (c.num_attention_heads % kv !== 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['num_key_value_heads'],
        message: `${kv} kv heads do not divide ${c.num_attention_heads} attention heads`,
      });
    }
    if (!c.head_dim && c.hidden_size % c.num_attention_heads !== 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['head_dim'],
        message: 'head_dim is missing and hidden_size is not a multiple of num_attention_heads',
      });
    }
    if (c.hidden_act !== undefined && c.hidden_act !== 'silu') {
      ctx.addIssue({ code: 'custom', path: ['hidden_act'], message: `hidden_act "${c.hidden_act}" is not supported (silu only)` });
    }
  });

export type RawModelConfig = z.output<typeof ModelConfigSchema>;

/** The config with every default resolved and the shapes the weights must have. */
export interface ModelConfig {
  raw: RawModelConfig;
  modelType: ModelType;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositions: number;
  rmsNormEps: number;
  ropeTheta: number;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias (qwen2 always; llama with attention_bias). */
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  bosTokenId: number | undefined;
  eosTokenIds: number[];
}

export function parseModelConfig(text: string, file = 'config.json'): ModelConfig {
  return resolveModelConfig(parseWith(ModelConfigSchema, parseJsonText(text, file), 'config_invalid', file), file);
}

export function resolveModelConfig(raw: RawModelConfig, file = 'config.json'): ModelConfig {
  const modelType = raw.model_type as ModelType;
  if (
    raw.rope_scaling &&
    !['default', 'linear', 'llama3', 'dynamic'].includes(String(raw.rope_scaling.rope_type ?? raw.rope_scaling.type))
  ) {
    throw new LoraEdgeError('config_unsupported', `rope_scaling ${JSON.stringify(raw.rope_scaling)} is not supported`, {
      file,
      field: 'rope_scaling',
    });
  }
  const numHeads = raw.num_attention_heads;
  const eos = raw.eos_token_id;
  // Defaults follow transformers' LlamaConfig / MistralConfig / Qwen2Config.
  const defaultTie = false;
  return {
    raw,
    modelType,
    hiddenSize: raw.hidden_size,
    intermediateSize: raw.intermediate_size,
    numLayers: raw.num_hidden_layers,
    numHeads,
    numKvHeads: raw.num_key_value_heads ?? numHeads,
    headDim: raw.head_dim ?? raw.hidden_size / numHeads,
    vocabSize: raw.vocab_size,
    maxPositions: raw.max_position_embeddings ?? 2048,
    rmsNormEps: raw.rms_norm_eps ?? 1e-6,
    ropeTheta: raw.rope_theta ?? 10000,
    tieWordEmbeddings: raw.tie_word_embeddings ?? defaultTie,
    qkvBias: modelType === 'qwen2' ? true : (raw.attention_bias ?? false),
    oBias: modelType === 'qwen2' ? false : (raw.attention_bias ?? false),
    mlpBias: raw.mlp_bias ?? false,
    bosTokenId: typeof raw.bos_token_id === 'number' ? raw.bos_token_id : undefined,
    eosTokenIds: eos === null || eos === undefined ? [] : Array.isArray(eos) ? eos : [eos],
  };
}
