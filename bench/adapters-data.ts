/**
 * Random data for bench/adapters.bench.ts: a Llama of llama2.c's 15M shape and PEFT adapters
 * built through the real loaders (LoRA, LoRI-style sparse LoRA, VeRA with shared projections).
 */
import {
  fromFloat32,
  type LoraAdapter,
  loadLoraAdapter,
  type ModelConfig,
  PROJECTIONS,
  type Projection,
  parseModelConfig,
  projectionModule,
  serializeSafetensors,
  type Tensor,
} from '@lora-edge/shared';

export const SHAPE_15M = { dim: 288, layers: 6, heads: 6, hidden: 768, vocab: 32000 };
export type Shape = typeof SHAPE_15M;

/** Uniform in [-scale/2, scale/2), xorshift: the same numbers on every run. */
export function randomF32(n: number, scale: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = ((s >>> 0) / 2 ** 32 - 0.5) * scale;
  }
  return out;
}

export function moduleShape(s: Shape, p: Projection): { out: number; in: number } {
  return { out: p === 'gate_proj' || p === 'up_proj' ? s.hidden : s.dim, in: p === 'down_proj' ? s.hidden : s.dim };
}

export function configOf(s: Shape): ModelConfig {
  return parseModelConfig(
    JSON.stringify({
      model_type: 'llama',
      hidden_size: s.dim,
      intermediate_size: s.hidden,
      num_hidden_layers: s.layers,
      num_attention_heads: s.heads,
      num_key_value_heads: s.heads,
      vocab_size: s.vocab,
      max_position_embeddings: 1024,
      rms_norm_eps: 1e-5,
      tie_word_embeddings: false,
    }),
  );
}

/** f32 tensors of a random model (weights ~ U(-1, 1)/sqrt(in), norms 1). */
export function randomModel(s: Shape): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  let seed = 1;
  const put = (name: string, shape: [number, number], scale: number) =>
    m.set(name, fromFloat32(randomF32(shape[0] * shape[1], scale, seed++), 'F32', shape));
  const ones = (name: string) => m.set(name, fromFloat32(new Float32Array(s.dim).fill(1), 'F32', [s.dim]));
  put('model.embed_tokens.weight', [s.vocab, s.dim], 1);
  for (let l = 0; l < s.layers; l++) {
    ones(`model.layers.${l}.input_layernorm.weight`);
    ones(`model.layers.${l}.post_attention_layernorm.weight`);
    for (const p of PROJECTIONS) {
      const { out, in: inF } = moduleShape(s, p);
      put(`${projectionModule(l, p)}.weight`, [out, inF], 2 / Math.sqrt(inF));
    }
  }
  ones('model.norm.weight');
  put('lm_head.weight', [s.vocab, s.dim], 2 / Math.sqrt(s.dim));
  return m;
}

/** A rank-r LoRA on all seven projections; `density` < 1 keeps that share of B (LoRI-style, the rest exact zeros). */
export function randomLora(s: Shape, r: number, seed: number, density = 1): LoraAdapter {
  const tensors = [];
  for (let l = 0; l < s.layers; l++) {
    for (const p of PROJECTIONS) {
      const { out, in: inF } = moduleShape(s, p);
      const key = `base_model.model.${projectionModule(l, p)}`;
      const B = randomF32(out * r, 0.01, seed++);
      if (density < 1) {
        const keep = randomF32(out * r, 1, seed++);
        for (let i = 0; i < B.length; i++) if ((keep[i] as number) + 0.5 >= density) B[i] = 0;
      }
      tensors.push({ name: `${key}.lora_A.weight`, ...fromFloat32(randomF32(r * inF, 2 / Math.sqrt(inF), seed++), 'F32', [r, inF]) });
      tensors.push({ name: `${key}.lora_B.weight`, ...fromFloat32(B, 'F32', [out, r]) });
    }
  }
  const config = { peft_type: 'LORA', r, lora_alpha: 2 * r, target_modules: [...PROJECTIONS] };
  return loadLoraAdapter({ configText: JSON.stringify(config), weights: serializeSafetensors(tensors) });
}

/**
 * A VeRA adapter on all seven projections: shared vera_A [r, max in], vera_B [max out, r] (the
 * same for every adapter of `projectionSeed`), per module λ_b [out], λ_d [r] from `seed`.
 */
export function randomVera(s: Shape, r: number, projectionSeed: number, seed: number): LoraAdapter {
  const maxIn = Math.max(s.dim, s.hidden);
  const maxOut = Math.max(s.dim, s.hidden);
  const tensors = [
    { name: 'base_model.vera_A', ...fromFloat32(randomF32(r * maxIn, 2 / Math.sqrt(maxIn), projectionSeed), 'F32', [r, maxIn]) },
    { name: 'base_model.vera_B', ...fromFloat32(randomF32(maxOut * r, 2 / Math.sqrt(r), projectionSeed + 1), 'F32', [maxOut, r]) },
  ];
  for (let l = 0; l < s.layers; l++) {
    for (const p of PROJECTIONS) {
      const { out } = moduleShape(s, p);
      const key = `base_model.model.${projectionModule(l, p)}`;
      tensors.push({ name: `${key}.vera_lambda_b`, ...fromFloat32(randomF32(out, 0.02, seed++), 'F32', [out]) });
      tensors.push({ name: `${key}.vera_lambda_d`, ...fromFloat32(randomF32(r, 0.2, seed++), 'F32', [r]) });
    }
  }
  const config = { peft_type: 'VERA', r, target_modules: [...PROJECTIONS], projection_prng_key: projectionSeed, save_projection: true };
  return loadLoraAdapter({ configText: JSON.stringify(config), weights: serializeSafetensors(tensors) });
}
