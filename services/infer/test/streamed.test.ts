/**
 * A model too big to take its weights as inputs: its weights stream from R2 into the session's
 * external data, it is served with constant weights, and a merged request runs stacked. Checked
 * against the shared reference decoder on the same random weights.
 */

import { exports } from 'cloudflare:workers';
import {
  fromFloat32,
  greedy,
  loadLlamaWeights,
  loadLoraAdapter,
  mixTerms,
  PROJECTIONS,
  parseModelConfig,
  projectionModule,
  serializeSafetensors,
  type Tensor,
  withAdapters,
} from '@lora-edge/shared';
import { describe, expect, it } from 'vitest';
import { putAdapter, putModel } from './seed.ts';

const raw = {
  model_type: 'llama',
  hidden_size: 256,
  intermediate_size: 512,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 384,
  max_position_embeddings: 256,
  tie_word_embeddings: false,
};
const config = parseModelConfig(JSON.stringify(raw));

function random(seed: number) {
  let s = seed >>> 0;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32 - 0.5;
  };
}

describe('a model served with constant weights', () => {
  it('streams its weights from R2 and gives the reference ids, base and with an adapter', async () => {
    const next = random(5);
    const tensors = new Map<string, Tensor>();
    const put = (name: string, shape: number[], scale: number, offset = 0) =>
      tensors.set(
        name,
        fromFloat32(
          Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => offset + next() * scale),
          'F32',
          shape,
        ),
      );
    put('model.embed_tokens.weight', [384, 256], 2);
    put('lm_head.weight', [384, 256], 0.2);
    put('model.norm.weight', [256], 0.1, 1);
    for (let l = 0; l < 4; l++) {
      put(`model.layers.${l}.input_layernorm.weight`, [256], 0.1, 1);
      put(`model.layers.${l}.post_attention_layernorm.weight`, [256], 0.1, 1);
      for (const p of PROJECTIONS) {
        const out = p === 'gate_proj' || p === 'up_proj' ? 512 : p === 'k_proj' || p === 'v_proj' ? 128 : 256;
        const inF = p === 'down_proj' ? 512 : 256;
        put(`${projectionModule(l, p)}.weight`, [out, inF], 3.4 / Math.sqrt(inF));
      }
    }
    const digest = await putModel(raw, serializeSafetensors([...tensors].map(([name, t]) => ({ name, ...t }))));
    const adapterTensors = [];
    for (const m of ['model.layers.1.self_attn.v_proj', 'model.layers.2.mlp.up_proj']) {
      const out = m.endsWith('v_proj') ? 128 : 512;
      adapterTensors.push({
        name: `base_model.model.${m}.lora_A.weight`,
        ...fromFloat32(
          Float32Array.from({ length: 8 * 256 }, () => next() * 0.5),
          'F32',
          [8, 256],
        ),
      });
      adapterTensors.push({
        name: `base_model.model.${m}.lora_B.weight`,
        ...fromFloat32(
          Float32Array.from({ length: out * 8 }, () => next() * 0.5),
          'F32',
          [out, 8],
        ),
      });
    }
    const adapterConfig = { peft_type: 'LORA', r: 8, lora_alpha: 16, target_modules: ['v_proj', 'up_proj'] };
    const adapterBytes = serializeSafetensors(adapterTensors);
    const a = await putAdapter('t2', 'big-lora', adapterConfig, adapterBytes);

    const prompt = [1, 7, 42, 99, 3];
    const w = loadLlamaWeights(config, (n) => tensors.get(n));
    const r = await exports.InferRpc.generate({ model: { digest }, prompt_ids: prompt, max_tokens: 12, ignore_eos: true });
    expect(r.ok && r.completion.ids).toEqual(greedy(w, prompt, 12).ids);

    const adapter = loadLoraAdapter({ configText: JSON.stringify(adapterConfig), weights: adapterBytes });
    const want = greedy(withAdapters(w, mixTerms([{ name: 'a', adapter, weight: 1 }]), 'unmerged'), prompt, 12).ids;
    const ra = await exports.InferRpc.generate({
      model: { digest },
      prompt_ids: prompt,
      max_tokens: 12,
      ignore_eos: true,
      adapters: [{ ...a, weight: 1 }],
      mode: 'merged',
    });
    expect(ra.ok && ra.completion.ids).toEqual(want);
    expect(ra.ok && ra.completion.served.mode).toBe('unmerged');
    const stats = await exports.InferRpc.stats();
    expect(stats.models.find((m) => m.digest === digest)?.projection_weights).toBe('constant');
  });
});
