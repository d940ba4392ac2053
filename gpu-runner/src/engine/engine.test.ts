import { join } from 'node:path';
import {
  dequantizeNf4Tensor,
  greedy,
  isQuantizedLinear,
  LoraEdgeError,
  loadLlamaWeights,
  quantizeNf4,
  type Tensor,
  toBnbTensors,
} from '@lora-edge/shared';
import { afterAll, describe, expect, it } from 'vitest';
import { ADAPTERS, ALL_ADAPTERS, readJson, STORIES } from '../../../test/fixtures.ts';
import { loadBackend } from '../backend/index.ts';
import { loadAdapterDir, modelSource, openModelDir } from '../io/files.ts';
import { Engine } from './engine.ts';
import type { MixEntry } from './mix.ts';
import { loadRunnerModel } from './model.ts';
import { nf4Decoder } from './nf4.ts';

interface Case {
  prompt_ids: number[];
  greedy_ids: number[];
  last_prompt_logits: number[];
}
interface AdapterRef {
  generations: { prompt_ids: number[]; greedy_ids_merged: number[] }[];
}

const dir = openModelDir(STORIES);
afterAll(() => dir.close());
const source = modelSource(dir);
const refs = readJson<{ cases: Case[] }>(join(STORIES, 'reference.json')).cases;
const adapters = new Map<string, ReturnType<typeof loadAdapterDir>>(ALL_ADAPTERS.map((n) => [n, loadAdapterDir(join(ADAPTERS, n))]));
function maxAbsDiff(a: Float32Array, b: number[]): number {
  return b.reduce((m, v, i) => Math.max(m, Math.abs((a[i] as number) - v)), 0);
}

const entry = (name: string, weight = 1): MixEntry => ({ id: name, adapter: adapters.get(name)!, weight });

describe.each(['js', 'cpu-native'] as const)('engine on the %s backend', (backendName) => {
  const backend = loadBackend(backendName);
  const engine = new Engine(backend, loadRunnerModel(backend, source), source);

  it.each(refs.map((c, i) => [i, c] as const))(
    'stories260k prompt %i: greedy ids equal llama2.c, first logits within 1e-4',
    async (_, c) => {
      const r = await engine.generate({ prompt: c.prompt_ids, maxTokens: c.greedy_ids.length, ignoreEos: true, returnFirstLogits: true });
      expect(r.ids).toEqual(c.greedy_ids);
      expect(r.finishReason).toBe('length');
      expect(maxAbsDiff(r.firstLogits!, c.last_prompt_logits)).toBeLessThan(1e-4);
    },
  );

  it('runs an NF4 model (lora-edge quantize layout): logits equal the reference decoder on the dequantized weights', async () => {
    const tensors = new Map<string, Tensor>();
    const dequantized = new Map<string, Tensor>();
    for (const [name, t] of dir.tensors) {
      const tensor = t.source.read(t.info);
      dequantized.set(name, tensor);
      if (!isQuantizedLinear(name)) {
        tensors.set(name, tensor);
        continue;
      }
      const q = quantizeNf4(tensor, { doubleQuant: true });
      for (const b of toBnbTensors(name, q)) tensors.set(b.name, b);
      dequantized.set(name, dequantizeNf4Tensor(q));
    }
    const nf4Source = { config: source.config, get: (n: string) => tensors.get(n) };
    const nf4 = new Engine(backend, loadRunnerModel(backend, nf4Source, { decoders: [nf4Decoder] }), nf4Source);
    const reference = loadLlamaWeights(source.config, (n) => dequantized.get(n));
    let fromF32 = 0;
    for (const c of refs) {
      const r = await nf4.generate({ prompt: c.prompt_ids, maxTokens: 8, ignoreEos: true, returnFirstLogits: true });
      const want = greedy(reference, c.prompt_ids, 8);
      expect(r.ids).toEqual(want.ids);
      expect(maxAbsDiff(r.firstLogits!, [...want.firstLogits])).toBeLessThan(1e-3);
      fromF32 = Math.max(fromF32, maxAbsDiff(r.firstLogits!, c.last_prompt_logits));
    }
    // How far 4 bits move this tiny model (64-wide rows: one absmax block per row): measured ≈ 13 at most.
    expect(fromF32).toBeGreaterThan(0);
  });

  it.each(ALL_ADAPTERS)('%s: merged and unmerged greedy ids equal PEFT', async (name) => {
    const ref = readJson<AdapterRef>(join(ADAPTERS, name, 'reference.json'));
    for (const g of ref.generations) {
      for (const mode of ['merged', 'unmerged'] as const) {
        const r = await engine.generate({
          prompt: g.prompt_ids,
          maxTokens: g.greedy_ids_merged.length,
          mix: [entry(name)],
          mode,
          ignoreEos: true,
        });
        expect(r.ids, `${mode} ${g.prompt_ids}`).toEqual(g.greedy_ids_merged);
      }
    }
  });

  it('a batch of four adapters, the bare base and the weighted mix gives each sequence its solo ids', async () => {
    const mixRef = readJson<{ adapters: string[]; weights: number[]; prompt_ids: number[]; greedy_ids_unmerged: number[] }>(
      join(ADAPTERS, 'mixes', 'reference.json'),
    );
    const jobs = [
      ...['tiny-qv-r4', 'tiny-all-r8', 'tiny-rslora-r8', 'tiny-dora-r4'].map((name) => {
        const g = readJson<AdapterRef>(join(ADAPTERS, name, 'reference.json')).generations[1]!;
        return { req: { prompt: g.prompt_ids, mix: [entry(name)] }, want: g.greedy_ids_merged };
      }),
      { req: { prompt: refs[1]!.prompt_ids }, want: refs[1]!.greedy_ids.slice(0, 32) },
      {
        req: { prompt: mixRef.prompt_ids, mix: mixRef.adapters.map((a, i) => entry(a, mixRef.weights[i])) },
        want: mixRef.greedy_ids_unmerged,
      },
    ];
    const before = engine.steps;
    const results = await Promise.all(jobs.map((j) => engine.generate({ ...j.req, maxTokens: j.want.length, ignoreEos: true })));
    for (const [i, r] of results.entries()) expect(r.ids, `job ${i}`).toEqual(jobs[i]!.want);
    // They ran together: one step per generated token, not one per token per sequence.
    expect(engine.steps - before).toBe(32);
  });

  it('streams tokens as they are sampled and stops at EOS unless told otherwise', async () => {
    const h = engine.submit({ prompt: refs[0]!.prompt_ids, maxTokens: 10, ignoreEos: true });
    const seen: number[] = [];
    for await (const t of h.tokens) seen.push(t.token);
    expect(seen).toEqual(refs[0]!.greedy_ids.slice(0, 10));
    const stopAt = refs[0]!.greedy_ids[3]!;
    const r = await engine.generate({ prompt: refs[0]!.prompt_ids, maxTokens: 10, stopIds: [stopAt] });
    expect(r.finishReason).toBe('stop');
    expect(r.ids.at(-1)).toBe(stopAt);
  });

  it('lets a request join a running batch between decode steps', async () => {
    const long = engine.submit({ prompt: refs[1]!.prompt_ids, maxTokens: 40, ignoreEos: true });
    const it = long.tokens[Symbol.asyncIterator]();
    for (let i = 0; i < 5; i++) await it.next();
    const joined = engine.generate({ prompt: refs[0]!.prompt_ids, maxTokens: 10, ignoreEos: true });
    const [a, b] = await Promise.all([long.result, joined]);
    expect(a.ids).toEqual(refs[1]!.greedy_ids.slice(0, 40));
    expect(b.ids).toEqual(refs[0]!.greedy_ids.slice(0, 10));
  });

  it('samples deterministically per seed', async () => {
    const req = { prompt: [1], maxTokens: 12, sampling: { temperature: 0.9, topK: 40, topP: 0.95, seed: 7 }, ignoreEos: true };
    const a = await engine.generate(req);
    const b = await engine.generate(req);
    const c = await engine.generate({ ...req, sampling: { ...req.sampling, seed: 8 } });
    expect(a.ids).toEqual(b.ids);
    expect(a.ids).not.toEqual(c.ids);
  });

  it('resumes after k reference ids: the tail equals the uninterrupted greedy run, indices continue', async () => {
    const c = refs[1]!;
    for (const k of [1, 7, 20]) {
      const h = engine.submit({ prompt: c.prompt_ids, maxTokens: 32, ignoreEos: true, resumeIds: c.greedy_ids.slice(0, k) });
      const events: { token: number; index: number }[] = [];
      for await (const t of h.tokens) events.push(t);
      expect(events.map((e) => e.token)).toEqual(c.greedy_ids.slice(k, 32));
      expect(events.map((e) => e.index)).toEqual(Array.from({ length: 32 - k }, (_, i) => k + i));
      const r = await h.result;
      expect(r.ids).toEqual(c.greedy_ids.slice(0, 32));
      expect(r.finishReason).toBe('length');
      expect(r.promptTokens).toBe(c.prompt_ids.length);
    }
  });

  it('resumes a seeded sampled stream exactly where it was cut', async () => {
    const req = { prompt: [1], maxTokens: 24, sampling: { temperature: 0.8, topK: 0, topP: 1, seed: 1234 }, ignoreEos: true };
    const whole = await engine.generate(req);
    const resumed = await engine.generate({ ...req, resumeIds: whole.ids.slice(0, 9) });
    expect(resumed.ids).toEqual(whole.ids);
  });

  it('ends a resumed run at once when its ids already ended it', async () => {
    const c = refs[0]!;
    const spent = await engine.generate({ prompt: c.prompt_ids, maxTokens: 5, ignoreEos: true, resumeIds: c.greedy_ids.slice(0, 5) });
    expect(spent).toMatchObject({ ids: c.greedy_ids.slice(0, 5), finishReason: 'length' });
    const stopped = engine.submit({
      prompt: c.prompt_ids,
      maxTokens: 10,
      stopIds: [c.greedy_ids[2]!],
      resumeIds: c.greedy_ids.slice(0, 3),
    });
    const seen: number[] = [];
    for await (const t of stopped.tokens) seen.push(t.token);
    expect(seen).toEqual([]);
    expect((await stopped.result).finishReason).toBe('stop');
    expect(() => engine.submit({ prompt: [1], maxTokens: 2, resumeIds: [1, 2, 3] })).toThrow(/exceed max tokens/);
  });

  it.each([
    [{ prompt: [], maxTokens: 4 }, /prompt is empty/],
    [{ prompt: [1, 512], maxTokens: 4 }, /token id 512 is outside the vocabulary/],
    [{ prompt: [1], maxTokens: 0 }, /max tokens must be a positive integer/],
    [{ prompt: [1], maxTokens: 600 }, /exceed the context of 512/],
    [{ prompt: [1], maxTokens: 4, mix: [entry('tiny-qv-r4', 0.5), entry('tiny-all-r8', -0.5)] }, /sum to zero/],
    [{ prompt: [1], maxTokens: 4, mix: [entry('tiny-dora-r4', 0.5)] }, /weighted DoRA/],
  ])('refuses %j', (req, msg) => {
    expect(() => engine.submit(req)).toThrow(msg);
    try {
      engine.submit(req);
    } catch (e) {
      expect(e).toBeInstanceOf(LoraEdgeError);
    }
  });
});
