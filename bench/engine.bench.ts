/**
 * The runner engine on random-weight models of llama2.c's 110M and 15M shapes: single-stream
 * decode in f32, bf16 and NF4, unmerged LoRA against merged weights, and a batch of 16 streams
 * on 16 different rank-16 adapters. Floors: weight bytes a token must read / measured bandwidth.
 */
import { Engine, loadBackend, loadRunnerModel, type MixEntry, nf4Decoder } from '@lora-edge/gpu-runner';
import {
  fromFloat32,
  isQuantizedLinear,
  type LoraAdapter,
  loadLoraAdapter,
  type ModelConfig,
  PROJECTIONS,
  parseModelConfig,
  projectionModule,
  quantizeNf4,
  serializeSafetensors,
  type Tensor,
  toBnbTensors,
} from '@lora-edge/shared';
import type { Row, Suite } from './lib.ts';

interface Shape {
  name: string;
  dim: number;
  layers: number;
  heads: number;
  hidden: number;
  vocab: number;
  /** llama2.c run.c, 2 threads, f32 (design brief). */
  runC: number;
}

const SHAPES: Shape[] = [
  { name: '15M', dim: 288, layers: 6, heads: 6, hidden: 768, vocab: 32000, runC: 290 },
  { name: '110M', dim: 768, layers: 12, heads: 12, hidden: 2048, vocab: 32000, runC: 42 },
];

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32 - 0.5;
  };
}

function randomF32(n: number, scale: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = r() * scale;
  return out;
}

function configOf(s: Shape): ModelConfig {
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

/** f32 tensors of a random model (weights ~ U(-0.5, 0.5)/sqrt(in), norms 1). */
function randomModel(s: Shape): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  let seed = 1;
  const put = (name: string, shape: number[], scale: number) =>
    m.set(
      name,
      fromFloat32(
        randomF32(
          shape.reduce((a, b) => a * b, 1),
          scale,
          seed++,
        ),
        'F32',
        shape,
      ),
    );
  put('model.embed_tokens.weight', [s.vocab, s.dim], 1);
  for (let l = 0; l < s.layers; l++) {
    m.set(`model.layers.${l}.input_layernorm.weight`, fromFloat32(new Float32Array(s.dim).fill(1), 'F32', [s.dim]));
    m.set(`model.layers.${l}.post_attention_layernorm.weight`, fromFloat32(new Float32Array(s.dim).fill(1), 'F32', [s.dim]));
    for (const p of PROJECTIONS) {
      const isDown = p === 'down_proj';
      const out = p === 'gate_proj' || p === 'up_proj' ? s.hidden : s.dim;
      const inF = isDown ? s.hidden : s.dim;
      put(`${projectionModule(l, p)}.weight`, [out, inF], 2 / Math.sqrt(inF));
    }
  }
  m.set('model.norm.weight', fromFloat32(new Float32Array(s.dim).fill(1), 'F32', [s.dim]));
  put('lm_head.weight', [s.vocab, s.dim], 2 / Math.sqrt(s.dim));
  return m;
}

function convert(m: Map<string, Tensor>, dtype: 'BF16' | 'NF4'): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [name, t] of m) {
    const bf = fromFloat32(new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4), 'BF16', t.shape);
    if (dtype === 'NF4' && isQuantizedLinear(name)) for (const b of toBnbTensors(name, quantizeNf4(bf))) out.set(b.name, b);
    else out.set(name, bf);
  }
  return out;
}

/** A rank-16 PEFT adapter on all seven projections, through the real loader. */
function randomAdapter(s: Shape, r: number, seed: number): LoraAdapter {
  const tensors = [];
  for (let l = 0; l < s.layers; l++) {
    for (const p of PROJECTIONS) {
      const out = p === 'gate_proj' || p === 'up_proj' ? s.hidden : s.dim;
      const inF = p === 'down_proj' ? s.hidden : s.dim;
      const key = `base_model.model.${projectionModule(l, p)}`;
      tensors.push({ name: `${key}.lora_A.weight`, ...fromFloat32(randomF32(r * inF, 1 / Math.sqrt(inF), seed++), 'F32', [r, inF]) });
      tensors.push({ name: `${key}.lora_B.weight`, ...fromFloat32(randomF32(out * r, 0.01, seed++), 'F32', [out, r]) });
    }
  }
  const config = { peft_type: 'LORA', r, lora_alpha: 2 * r, target_modules: [...PROJECTIONS] };
  return loadLoraAdapter({ configText: JSON.stringify(config), weights: serializeSafetensors(tensors) });
}

function weightBytes(m: Map<string, Tensor>): number {
  let n = 0;
  for (const [name, t] of m) if (name !== 'model.embed_tokens.weight') n += t.data.byteLength;
  return n;
}

async function tokPerSec(
  engine: Engine,
  streams: number,
  tokens: number,
  mix: (i: number) => MixEntry[] | undefined,
  mode: 'merged' | 'unmerged' = 'unmerged',
): Promise<number> {
  const run = () =>
    Promise.all(
      Array.from({ length: streams }, (_, i) =>
        engine.generate({ prompt: [1 + i], maxTokens: tokens, ignoreEos: true, mix: mix(i), mode }),
      ),
    );
  await run(); // warm: caches, stacks, merged variants
  const best: number[] = [];
  for (let rep = 0; rep < 3; rep++) {
    const t0 = performance.now();
    await run();
    best.push((streams * tokens) / ((performance.now() - t0) / 1000));
  }
  return best.sort((a, b) => a - b)[1] as number;
}

export const suite: Suite = {
  title: 'runner engine (native CPU backend, 2 threads)',
  async run(ctx) {
    const backend = loadBackend('cpu-native'); // fail loudly rather than time the TypeScript fallback
    backend.setThreads?.(2);
    const rows: Row[] = [];
    for (const s of ctx.quick ? SHAPES.slice(0, 1) : SHAPES) {
      const config = configOf(s);
      const f32 = randomModel(s);
      const variants: [string, Map<string, Tensor>][] = [
        ['f32', f32],
        ['bf16', convert(f32, 'BF16')],
        ['nf4 (from bf16; lm_head bf16)', convert(f32, 'NF4')],
      ];
      const n = s.name === '110M' ? 24 : 64;
      let f32Rate = 0;
      let f32Engine: Engine | undefined;
      for (const [label, tensors] of variants) {
        const source = { config, get: (name: string) => tensors.get(name) };
        const engine = new Engine(backend, loadRunnerModel(backend, source, { decoders: [nf4Decoder] }), source);
        const rate = await tokPerSec(engine, 1, n, () => undefined);
        const bytes = weightBytes(tensors);
        if (label === 'f32') {
          f32Rate = rate;
          f32Engine = engine;
        }
        rows.push({
          name: `${s.name} ${label}: single-stream decode`,
          value: rate,
          unit: 'tok/s',
          baseline:
            label === 'f32' ? { value: s.runC, label: 'llama2.c run.c f32, design brief' } : { value: f32Rate, label: 'our f32, same run' },
          floor: 1000 / ctx.floorMs(bytes),
          note: `floor = ${(bytes / 1e6).toFixed(0)} MB of weights per token at the measured bandwidth (a ceiling in tok/s)`,
        });
      }
      // LoRA: rank-16 adapters on all seven projections.
      const engine = f32Engine as Engine;
      const adapters = Array.from({ length: 16 }, (_, i) => randomAdapter(s, 16, 1000 + 100 * i));
      const mixOf = (i: number): MixEntry[] => [{ id: `a${i}`, adapter: adapters[i] as LoraAdapter, weight: 1 }];
      const single = await tokPerSec(engine, 1, n, () => mixOf(0), 'unmerged');
      const singleMerged = await tokPerSec(engine, 1, n, () => mixOf(0), 'merged');
      rows.push({
        name: `${s.name} f32: single stream, rank-16 adapter unmerged`,
        value: single,
        unit: 'tok/s',
        baseline: { value: singleMerged, label: 'same adapter merged, same run' },
        note: 'target ≥ 0.90',
      });
      const batchUnmerged = await tokPerSec(engine, 16, n / 2, mixOf, 'unmerged');
      const batchBase = await tokPerSec(engine, 16, n / 2, () => undefined);
      rows.push({
        name: `${s.name} f32: 16 streams × 16 different rank-16 adapters, unmerged`,
        value: batchUnmerged,
        unit: 'tok/s',
        baseline: { value: batchBase, label: 'same batch on merged weights (one weight set), same run' },
        note: 'target ≥ 0.85',
      });
      const bf16Engine = new Engine(backend, engine.model, engine.source, { loraFactorDtype: 'bf16' });
      const batchBf16 = await tokPerSec(bf16Engine, 16, n / 2, mixOf, 'unmerged');
      rows.push({
        name: `${s.name} f32: 16 streams × 16 different rank-16 adapters, unmerged, bf16 factors`,
        value: batchBf16,
        unit: 'tok/s',
        baseline: { value: batchBase, label: 'same batch on merged weights (one weight set), same run' },
        note: 'target ≥ 0.85; factors stored in bf16',
      });
    }
    return rows;
  },
};
