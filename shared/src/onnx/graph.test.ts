/** The protobuf writer, the graph builder and the weight file, byte for byte where the format is fixed. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readBytes, STORIES } from '../../../test/fixtures.ts';
import { parseModelConfig } from '../model/config.ts';
import { readSafetensors } from '../safetensors/read.ts';
import { buildDecoderGraph } from './decoder-graph.ts';
import { GraphBuilder } from './graph.ts';
import { DataType, encodeModel } from './proto.ts';
import { ProtoWriter } from './protobuf.ts';
import { buildWeightData, WeightAssembler } from './weights.ts';

const bytes = (fill: (w: ProtoWriter) => void) => {
  const w = new ProtoWriter();
  fill(w);
  return [...w.finish()];
};

describe('protobuf writer', () => {
  it('encodes varints, negative int64, strings and nested messages as protoc does', () => {
    expect(bytes((w) => w.int(1, 300))).toEqual([0x08, 0xac, 0x02]);
    expect(bytes((w) => w.int(1, -1))).toEqual([0x08, ...Array(9).fill(0xff), 0x01]);
    expect(bytes((w) => w.int(1, 2n ** 53n + 1n))).toEqual([0x08, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]);
    expect(bytes((w) => w.string(2, 'hi'))).toEqual([0x12, 0x02, 0x68, 0x69]);
    expect(bytes((w) => w.float(2, 1))).toEqual([0x15, 0x00, 0x00, 0x80, 0x3f]);
    expect(bytes((w) => w.message(3, (m) => m.int(1, 1)))).toEqual([0x1a, 0x02, 0x08, 0x01]);
    expect(bytes((w) => w.packedInts(1, [1, 300]))).toEqual([0x0a, 0x03, 0x01, 0xac, 0x02]);
  });

  it('keeps big payloads by reference until finish, then copies them once', () => {
    const big = new Uint8Array(1000).fill(7);
    const w = new ProtoWriter();
    w.bytes(9, big);
    expect(w.length).toBe(1003);
    const out = w.finish();
    expect([...out.subarray(0, 3)]).toEqual([0x4a, 0xe8, 0x07]);
    expect(out.subarray(3).every((b) => b === 7)).toBe(true);
  });

  it('encodes a minimal ModelProto', () => {
    const g = new GraphBuilder('g');
    const m = encodeModel({ irVersion: 8, opsets: [{ domain: '', version: 17 }], graph: g.graph() });
    expect([...m]).toEqual([0x08, 0x08, 0x3a, 0x03, 0x12, 0x01, 0x67, 0x42, 0x02, 0x10, 0x11]);
  });
});

describe('graph builder', () => {
  it('refuses a value defined twice and deduplicates constants', () => {
    const g = new GraphBuilder('g');
    g.input('x', DataType.FLOAT, [1]);
    expect(() => g.input('x', DataType.FLOAT, [1])).toThrow(/defined twice/);
    expect(g.i64([1, 2])).toBe(g.i64([1, 2]));
    expect(g.i64([1, 2])).not.toBe(g.i64([2, 1]));
  });

  it('lays the decoder out as documented: inputs, outputs, external weights', () => {
    const config = parseModelConfig(
      JSON.stringify({
        model_type: 'llama',
        hidden_size: 64,
        intermediate_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        vocab_size: 256,
        tie_word_embeddings: true,
      }),
    );
    const graph = buildDecoderGraph(config);
    const inputs = graph.model.graph.inputs.map((i) => i.name);
    expect(inputs.slice(0, 4)).toEqual(['input_ids', 'position_ids', 'past_key_values.0.key', 'past_key_values.0.value']);
    // LoRA factors by family: A's by in-features, Bᵀ's by out-features, each with its ranks; row scales in one.
    expect(inputs.filter((n) => n.startsWith('lora_'))).toEqual([
      'lora_A.64',
      'lora_A.64.ranks',
      'lora_A.128',
      'lora_A.128.ranks',
      'lora_BT.128',
      'lora_BT.128.ranks',
      'lora_BT.64',
      'lora_BT.64.ranks',
      'lora_BT.256',
      'lora_BT.256.ranks',
      'lora_row_scale',
    ]);
    expect(graph.lora?.b.find((f) => f.dim === 64)?.groups).toEqual([
      'model.layers.0.self_attn.o_proj',
      'model.layers.0.mlp.down_proj',
      'model.layers.1.self_attn.o_proj',
      'model.layers.1.mlp.down_proj',
    ]);
    expect(graph.model.graph.outputs.map((o) => o.name)).toEqual([
      'logits',
      'present.0.key',
      'present.0.value',
      'present.1.key',
      'present.1.value',
    ]);
    // f32: embedding + 2 × (2 norms + 4 groups) + final norm, tied head; 64-byte aligned.
    expect(graph.weights.entries).toHaveLength(1 + 2 * 6 + 1);
    const qkv = graph.weights.entries.find((e) => e.name === 'model.layers.0.self_attn.qkv_proj.weight');
    expect(qkv?.byteLength).toBe((64 + 2 * 32) * 64 * 4);
    expect(graph.weights.entries.every((e) => e.offset % 64 === 0)).toBe(true);
    expect(graph.fedWeights).toHaveLength(0);
    expect(buildDecoderGraph(config, { projectionWeights: 'input' }).fedWeights).toHaveLength(2 * 4);
  });
});

describe('weights assembled from a chunked stream', () => {
  it('equal the in-memory build, for f32 and NF4 graphs, whatever the chunk sizes', () => {
    const config = parseModelConfig(readFileSync(join(STORIES, 'config.json'), 'utf8'));
    const bytes = readBytes(join(STORIES, 'model.safetensors'));
    const st = readSafetensors(bytes);
    for (const weights of ['f32', 'nf4'] as const) {
      const graph = buildDecoderGraph(config, { weights });
      const want = buildWeightData(graph, (n) => (st.has(n) ? st.tensor(n) : undefined));
      for (const chunk of [1000, 65536, 7 * 4099]) {
        const a = new WeightAssembler(graph, st.header.tensors);
        for (let off = 0; off < bytes.length; off += chunk) a.push(bytes.subarray(off, Math.min(bytes.length, off + chunk)));
        expect(Buffer.compare(a.finish(), want)).toBe(0);
      }
    }
    const graph = buildDecoderGraph(config);
    const cut = new WeightAssembler(graph, st.header.tensors);
    cut.push(bytes.subarray(0, bytes.length - 100));
    expect(() => cut.finish()).toThrow(/missing or truncated/);
  });
});
