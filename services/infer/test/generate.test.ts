/**
 * The edge decoder inside workerd: onnxruntime-web (WASM) loads the graph and weights from R2
 * and reproduces the golden greedy continuations, base and with every fixture adapter.
 */
import { exports } from 'cloudflare:workers';
import { beforeAll, describe, expect, it } from 'vitest';
import mixRef from '../../../fixtures/adapters/mixes/reference.json';
import storiesRef from '../../../fixtures/models/stories260k/reference.json';
import type { GenerateRequest } from '../src/request.ts';
import { ADAPTER_NAMES, type AdapterName, seedAdapter, seedStories } from './seed.ts';

type Ref = { tenant: string; name: string; digest: string };
let model: string;
const adapters = new Map<AdapterName, Ref>();

beforeAll(async () => {
  model = await seedStories();
  for (const n of ADAPTER_NAMES) adapters.set(n, await seedAdapter(n));
});

async function ids(req: Omit<GenerateRequest, 'model'>): Promise<number[]> {
  const r = await exports.InferRpc.generate({ model: { digest: model }, ignore_eos: true, ...req });
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return r.completion.ids;
}

describe('stories260k in workerd', () => {
  it('greedy ids equal llama2.c for every reference prompt', async () => {
    for (const c of storiesRef.cases) {
      expect(await ids({ prompt_ids: c.prompt_ids, max_tokens: c.greedy_ids.length })).toEqual(c.greedy_ids);
    }
  });
});

describe.each(ADAPTER_NAMES)('adapter %s in workerd', (name) => {
  it.each(['merged', 'unmerged'] as const)('%s greedy ids equal PEFT', async (mode) => {
    const ref = (await import(`../../../fixtures/adapters/${name}/reference.json`)) as {
      default: { generations: { prompt_ids: number[]; greedy_ids_merged: number[] }[] };
    };
    const a = adapters.get(name) as Ref;
    for (const g of ref.default.generations) {
      const got = await ids({ prompt_ids: g.prompt_ids, max_tokens: g.greedy_ids_merged.length, adapters: [{ ...a, weight: 1 }], mode });
      expect(got).toEqual(g.greedy_ids_merged);
    }
  });
});

describe('weighted three-adapter mix in workerd', () => {
  it('stacked (unmerged) equals fused (merged) equals the reference', async () => {
    const mix = mixRef.adapters.map((n, i) => ({ ...(adapters.get(n as AdapterName) as Ref), weight: mixRef.weights[i] as number }));
    const req = { prompt_ids: mixRef.prompt_ids, max_tokens: mixRef.greedy_ids_unmerged.length, adapters: mix };
    const stacked = await ids({ ...req, mode: 'unmerged' });
    const fused = await ids({ ...req, mode: 'merged' });
    expect(stacked).toEqual(fused);
    expect(stacked).toEqual(mixRef.greedy_ids_unmerged);
  });
});
