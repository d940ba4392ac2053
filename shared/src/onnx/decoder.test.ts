/**
 * The ONNX decoder under onnxruntime-web (WASM) in plain Node, against the golden data: the
 * same graph and weights the infer Worker serves.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-web';
import { beforeAll, describe, expect, it } from 'vitest';
import { ADAPTERS, ALL_ADAPTERS, readBytes, readJson, STORIES } from '../../../test/fixtures.ts';
import { mixTerms } from '../lora/mix.ts';
import { parseModelConfig } from '../model/config.ts';
import { loadLoraAdapter } from '../peft/adapter.ts';
import { readSafetensors } from '../safetensors/read.ts';
import { greedyIds, type OnnxDecoder } from './decoder.ts';
import { buildDecoderGraph } from './decoder-graph.ts';
import { mergedFeeds, unmergedFeeds } from './feeds.ts';
import { createOrtDecoder, type OrtModuleLike } from './ort.ts';
import { buildWeightData } from './weights.ts';

ort.env.wasm.numThreads = 1;
const ORT = ort as unknown as OrtModuleLike;

const config = parseModelConfig(readFileSync(join(STORIES, 'config.json'), 'utf8'));
const st = readSafetensors(readBytes(join(STORIES, 'model.safetensors')));
const base = (n: string) => (st.has(n) ? st.tensor(n) : undefined);
const adapter = (name: string) =>
  loadLoraAdapter({
    configText: readFileSync(join(ADAPTERS, name, 'adapter_config.json'), 'utf8'),
    weights: readBytes(join(ADAPTERS, name, 'adapter_model.safetensors')),
  });

interface Case {
  prompt_ids: number[];
  greedy_ids: number[];
  last_prompt_logits: number[];
}

const graph = buildDecoderGraph(config, { projectionWeights: 'input' });
let decoder: OnnxDecoder;
beforeAll(async () => {
  decoder = (await createOrtDecoder(ORT, graph, buildWeightData(graph, base), {}, base)).decoder;
});

describe('stories260k under onnxruntime-web (Node)', () => {
  const ref = readJson<{ cases: Case[] }>(join(STORIES, 'reference.json'));

  it('greedy ids equal llama2.c for every prompt; first logits within 1e-4', async () => {
    for (const c of ref.cases) {
      expect(await greedyIds(decoder, c.prompt_ids, c.greedy_ids.length)).toEqual(c.greedy_ids);
      const logits = await decoder.forward(decoder.start(), c.prompt_ids);
      const diff = c.last_prompt_logits.reduce((m, v, i) => Math.max(m, Math.abs((logits[i] as number) - v)), 0);
      expect(diff).toBeLessThan(1e-4);
    }
  });

  it('token by token gives the logits of the whole prompt at once', async () => {
    const prompt = ref.cases[1]!.prompt_ids;
    const s = decoder.start();
    let last: Float32Array = new Float32Array(0);
    for (const t of prompt) last = await decoder.forward(s, [t]);
    const whole = await decoder.forward(decoder.start(), prompt);
    expect(Math.max(...whole.map((v, i) => Math.abs(v - (last[i] as number))))).toBeLessThan(1e-4);
  });
});

describe.each(ALL_ADAPTERS)('one graph, adapter %s', (name) => {
  const ref = readJson<{ generations: { prompt_ids: number[]; greedy_ids_merged: number[] }[] }>(join(ADAPTERS, name, 'reference.json'));
  const terms = mixTerms([{ name, adapter: adapter(name), weight: 1 }]);
  it.each(['merged', 'unmerged'] as const)('%s greedy ids equal PEFT', async (mode) => {
    const feeds = mode === 'merged' ? mergedFeeds(graph, terms, base) : unmergedFeeds(graph, terms, base);
    for (const g of ref.generations) {
      expect(await greedyIds(decoder, g.prompt_ids, g.greedy_ids_merged.length, feeds)).toEqual(g.greedy_ids_merged);
    }
  });
});

describe('weighted three-adapter mix', () => {
  const ref = readJson<{
    adapters: string[];
    weights: number[];
    prompt_ids: number[];
    greedy_ids_unmerged: number[];
    greedy_ids_fused: number[];
  }>(join(ADAPTERS, 'mixes', 'reference.json'));
  const terms = mixTerms(ref.adapters.map((n, i) => ({ name: n, adapter: adapter(n), weight: ref.weights[i] as number })));

  it('stacked in one matmul pair per group gives the fused ids and the reference', async () => {
    const stacked = unmergedFeeds(graph, terms, base);
    // q_proj is targeted by all three adapters: ranks 4 + 8 + 8 of q, plus k and v where targeted.
    expect(stacked.ranks['model.layers.0.self_attn.qkv_proj']).toBeGreaterThanOrEqual(20);
    const n = ref.greedy_ids_unmerged.length;
    const ids = await greedyIds(decoder, ref.prompt_ids, n, stacked);
    const fused = await greedyIds(decoder, ref.prompt_ids, n, mergedFeeds(graph, terms, base));
    expect(ids).toEqual(fused);
    expect(ids).toEqual(ref.greedy_ids_unmerged);
    expect(fused).toEqual(ref.greedy_ids_fused);
  });
});
