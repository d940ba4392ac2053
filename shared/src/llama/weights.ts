import { LoraEdgeError } from '../errors.ts';
import { fuseModule } from '../lora/fuse.ts';
import type { DeltaTerm } from '../lora/terms.ts';
import { type StackedLora, stackTerms } from '../lora/unmerged.ts';
import type { ModelConfig } from '../model/config.ts';
import { PROJECTIONS, type Projection, projectionModule } from '../model/weights.ts';
import { type Tensor, toFloat32 } from '../tensor/tensor.ts';

/** A linear layer y = W x (+ b), optionally with unmerged LoRA in stacked form. */
export interface Linear {
  W: Float32Array;
  out: number;
  in: number;
  bias?: Float32Array;
  lora?: StackedLora;
}

export interface DecoderLayer {
  inputNorm: Float32Array;
  postNorm: Float32Array;
  proj: Record<Projection, Linear>;
}

/** Float32 weights of a Llama-family decoder, laid out for the reference forward. */
export interface LlamaWeights {
  config: ModelConfig;
  embed: Float32Array;
  layers: DecoderLayer[];
  norm: Float32Array;
  /** [vocab, hidden]; the embedding itself when tied. */
  lmHead: Float32Array;
}

/** Gathers the weights by Hugging Face name; `get` reads one tensor (from memory, R2, a file...). */
export function loadLlamaWeights(config: ModelConfig, get: (name: string) => Tensor | undefined): LlamaWeights {
  const need = (name: string): Float32Array => {
    const t = get(name);
    if (!t) throw new LoraEdgeError('model_weights_invalid', 'missing', { tensor: name });
    return toFloat32(t);
  };
  const layers: DecoderLayer[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const proj = {} as Record<Projection, Linear>;
    for (const p of PROJECTIONS) {
      const module = projectionModule(l, p);
      const t = get(`${module}.weight`);
      if (!t) throw new LoraEdgeError('model_weights_invalid', 'missing', { tensor: `${module}.weight` });
      const [out, inF] = t.shape as [number, number];
      const bias = get(`${module}.bias`);
      proj[p] = bias ? { W: toFloat32(t), out, in: inF, bias: toFloat32(bias) } : { W: toFloat32(t), out, in: inF };
    }
    layers.push({
      inputNorm: need(`model.layers.${l}.input_layernorm.weight`),
      postNorm: need(`model.layers.${l}.post_attention_layernorm.weight`),
      proj,
    });
  }
  const embed = need('model.embed_tokens.weight');
  const lm = get('lm_head.weight');
  return { config, embed, layers, norm: need('model.norm.weight'), lmHead: lm ? toFloat32(lm) : embed };
}

/**
 * The same model with adapters applied: `merged` fuses the terms into new weight arrays;
 * `unmerged` keeps the base weights (shared, not copied) and attaches the stacked factors.
 */
export function withAdapters(base: LlamaWeights, terms: ReadonlyMap<string, DeltaTerm[]>, mode: 'merged' | 'unmerged'): LlamaWeights {
  const layers = base.layers.map((layer, l) => {
    const proj = { ...layer.proj };
    for (const p of PROJECTIONS) {
      const t = terms.get(projectionModule(l, p));
      if (!t?.length) continue;
      const lin = layer.proj[p];
      proj[p] =
        mode === 'merged' ? { ...lin, W: fuseModule(lin.W, lin.out, lin.in, t) } : { ...lin, lora: stackTerms(lin.W, lin.out, lin.in, t) };
    }
    return { ...layer, proj };
  });
  for (const module of terms.keys()) {
    if (!/^model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj$/.test(module)) {
      throw new LoraEdgeError('adapter_unsupported', `LoRA on ${module} is not supported by the decoder`);
    }
  }
  return { ...base, layers };
}
