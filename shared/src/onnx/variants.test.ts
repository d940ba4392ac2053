/**
 * Graph variants on a small random model (head_dim 16, so the contrib attention applies),
 * each against the reference TypeScript decoder on the weights it really computes with:
 * GroupQueryAttention, 4-bit MatMulNBits, NF4 MatMulBnb4, fed weights, baked adapters.
 */
import * as ort from 'onnxruntime-web';
import { describe, expect, it } from 'vitest';
import { greedy } from '../llama/forward.ts';
import { loadLlamaWeights, withAdapters } from '../llama/weights.ts';
import type { DeltaTerm } from '../lora/terms.ts';
import { parseModelConfig } from '../model/config.ts';
import { expectedTensors } from '../model/weights.ts';
import { dequantizeNf4 } from '../nf4/dequantize.ts';
import { quantizeNf4 } from '../nf4/quantize.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { assertFitsEdge, EdgeBudgetError, edgeFootprint } from './budget.ts';
import { greedyIds } from './decoder.ts';
import { buildDecoderGraph, type DecoderGraphOptions } from './decoder-graph.ts';
import { type AdapterFeeds, mergedFeeds, unmergedFeeds } from './feeds.ts';
import { createOrtDecoder, type OrtModuleLike } from './ort.ts';
import { dequantizeQ4, quantizeQ4 } from './q4.ts';
import { buildWeightData } from './weights.ts';

ort.env.wasm.numThreads = 1;
const ORT = ort as unknown as OrtModuleLike;

function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (((z ^ (z >>> 16)) >>> 0) / 2 ** 32) * 2 - 1;
  };
}

const config = parseModelConfig(
  JSON.stringify({
    model_type: 'llama',
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: 256,
    max_position_embeddings: 64,
    tie_word_embeddings: true,
  }),
);
const rnd = random(11);
const tensors = new Map<string, Tensor>();
for (const e of expectedTensors(config)) {
  if (e.optional) continue;
  const n = e.shape.reduce((a, b) => a * b, 1);
  const scale = e.shape.length === 2 ? 1.7 / Math.sqrt(e.shape[1] as number) : 0.1;
  const f = Float32Array.from({ length: n }, () => (e.shape.length === 2 ? rnd() * scale : 1 + rnd() * scale));
  tensors.set(e.name, { dtype: 'F32', shape: e.shape, data: new Uint8Array(f.buffer) });
}
const base = (n: string) => tensors.get(n);
const PROMPT = [1, 5, 9, 33];
const N = 16;

/** The reference decoder on the checkpoint with its projections passed through `quant` (what the 4-bit graph multiplies by). */
function reference(quant?: (w: Float32Array, out: number, inF: number) => Float32Array, terms?: Map<string, DeltaTerm[]>) {
  const get = (n: string): Tensor | undefined => {
    const t = tensors.get(n);
    if (!t || !quant || !/layers\.\d+\.(self_attn|mlp)\./.test(n)) return t;
    const [out, inF] = t.shape as [number, number];
    return { ...t, data: new Uint8Array(quant(new Float32Array(t.data.buffer.slice(0)), out, inF).buffer) };
  };
  const w = loadLlamaWeights(config, get);
  return greedy(terms ? withAdapters(w, terms, 'unmerged') : w, PROMPT, N).ids;
}

async function onnxIds(options: DecoderGraphOptions, adapter?: (g: ReturnType<typeof buildDecoderGraph>) => AdapterFeeds, bake = false) {
  const graph = buildDecoderGraph(config, options);
  const feeds = adapter?.(graph);
  const { decoder, session } = await createOrtDecoder(ORT, graph, buildWeightData(graph, base), {}, base, bake ? feeds?.feeds : undefined);
  try {
    return await greedyIds(decoder, PROMPT, N, bake ? undefined : feeds);
  } finally {
    await session.release();
  }
}

// One random adapter pair on q and down (different groups, different ranks).
const terms = new Map<string, DeltaTerm[]>();
for (const [module, out, inF, r] of [
  ['model.layers.0.self_attn.q_proj', 64, 64, 4],
  ['model.layers.1.mlp.down_proj', 64, 128, 8],
] as const) {
  terms.set(module, [
    {
      r,
      scale: 2,
      A: Float32Array.from({ length: r * inF }, () => rnd() * 0.3),
      B: Float32Array.from({ length: out * r }, () => rnd() * 0.3),
    },
  ]);
}

describe('graph variants against the reference decoder', () => {
  it('standard and contrib (GroupQueryAttention) attention', async () => {
    const ref = reference();
    expect(await onnxIds({ attention: 'standard' })).toEqual(ref);
    expect(await onnxIds({ attention: 'contrib' })).toEqual(ref);
  });

  it('4-bit MatMulNBits computes with exactly the dequantized weights', async () => {
    const ref = reference((w, out, inF) => dequantizeQ4(quantizeQ4(w, out, inF, 32)));
    expect(await onnxIds({ weights: 'q4' })).toEqual(ref);
  });

  it('NF4 MatMulBnb4 computes with exactly the bitsandbytes-dequantized weights', async () => {
    const ref = reference((w) => dequantizeNf4(quantizeNf4(w, { blocksize: 64 })));
    expect(await onnxIds({ weights: 'nf4' })).toEqual(ref);
    // QLoRA: the adapter unmerged on the 4-bit base.
    const refLora = reference((w) => dequantizeNf4(quantizeNf4(w, { blocksize: 64 })), terms);
    expect(await onnxIds({ weights: 'nf4' }, (g) => unmergedFeeds(g, terms))).toEqual(refLora);
  });

  it('an adapter fed stacked, fed merged, or baked into the session gives the reference ids', async () => {
    const ref = reference(undefined, terms);
    expect(await onnxIds({}, (g) => unmergedFeeds(g, terms))).toEqual(ref);
    expect(await onnxIds({ projectionWeights: 'input' }, (g) => mergedFeeds(g, terms, base))).toEqual(ref);
    expect(await onnxIds({}, (g) => unmergedFeeds(g, terms), true)).toEqual(ref);
  });
});

describe('malformed graph inputs are refused before onnxruntime sees them', () => {
  it('names, dims, ranks, values', async () => {
    const graph = buildDecoderGraph(config);
    const { decoder, session } = await createOrtDecoder(ORT, graph, buildWeightData(graph, base));
    const good = unmergedFeeds(graph, terms);
    const feeds = (f: AdapterFeeds['feeds']): AdapterFeeds => ({ ...good, feeds: f });
    const f32 = (n: number, dims: number[]) => ({ type: 'float32' as const, data: new Float32Array(n), dims });
    const ranks = (...r: number[]) => ({ type: 'int64' as const, data: BigInt64Array.from(r, BigInt), dims: [r.length] });
    // Family in=64 holds six groups (qkv, o, gate_up of two layers); Bᵀ family out=128 the two qkv groups.
    const A = 'lora_A.64';
    const BT = 'lora_BT.128';
    expect(() => decoder.start(feeds({ nope: f32(1, [1]) }))).toThrow(/not an adapter input/);
    expect(() => decoder.start(feeds({ input_ids: f32(1, [1]) }))).toThrow(/not an adapter input/);
    expect(() => decoder.start(feeds({ [A]: f32(4 * 63, [4, 63]), [`${A}.ranks`]: ranks(4, 0, 0, 0, 0, 0) }))).toThrow(/dimension 1 is 63/);
    expect(() => decoder.start(feeds({ [A]: f32(5, [4, 64]), [`${A}.ranks`]: ranks(4, 0, 0, 0, 0, 0) }))).toThrow(/do not hold/);
    expect(() => decoder.start(feeds({ [A]: f32(4 * 64, [4, 64]) }))).toThrow(/fed without/);
    expect(() => decoder.start(feeds({ [A]: f32(4 * 64, [4, 64]), [`${A}.ranks`]: ranks(3, 0, 0, 0, 0, 0) }))).toThrow(/do not add up/);
    expect(() =>
      decoder.start(
        feeds({
          [A]: f32(4 * 64, [4, 64]),
          [`${A}.ranks`]: ranks(4, 0, 0, 0, 0, 0),
          [BT]: f32(2 * 128, [2, 128]),
          [`${BT}.ranks`]: ranks(2, 0),
        }),
      ),
    ).toThrow(/rank 4 in lora_A but 2/);
    const nan = new Float32Array(4 * 64);
    nan[3] = Number.NaN;
    expect(() =>
      decoder.start(feeds({ [A]: { type: 'float32', data: nan, dims: [4, 64] }, [`${A}.ranks`]: ranks(4, 0, 0, 0, 0, 0) })),
    ).toThrow(/not finite/);
    await expect(decoder.forward(decoder.start(), [256])).rejects.toThrow(/outside the vocabulary/);
    await expect(decoder.forward(decoder.start(), Array(65).fill(1))).rejects.toThrow(/exceed the context/);
    expect(() => unmergedFeeds(graph, new Map([['lm_head', terms.get('model.layers.0.self_attn.q_proj')!]]))).toThrow(/no LoRA slot/);
    // The session still answers.
    expect(await greedyIds(decoder, PROMPT, 4, good)).toEqual(reference(undefined, terms).slice(0, 4));
    await session.release();
  });
});

describe('edge budget', () => {
  it('sizes a model from its shapes and refuses with the numbers', () => {
    const f = edgeFootprint(config);
    expect(f.weightBytes).toBe(4 * (256 * 64 + 2 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 64 * 128) + 5 * 64));
    expect(f.kvBytes).toBe(2 * 2 * 2 * 16 * 64 * 4);
    expect(() => assertFitsEdge(f, 128 * 2 ** 20)).not.toThrow();
    try {
      assertFitsEdge(f, 2 ** 20, 'the test model');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(EdgeBudgetError);
      expect((e as EdgeBudgetError).toJSON()).toMatchObject({ code: 'edge_budget_exceeded', budget_bytes: 2 ** 20, route: 'gpu' });
    }
  });
});
