/**
 * The plan: unmerged until the mix is hot, a merge request to the merge service at the threshold
 * (sent with the caller's key), and merged — on the fused artifact, same tokens — once R2 holds it.
 * The merge service is a recording stub here; the artifact is fused by the test with the same
 * shared code the merge service uses.
 */
import { env } from 'cloudflare:workers';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  fitAdapterToModel,
  fromFloat32,
  fuseModule,
  loadLoraAdapter,
  MODEL_CONFIG_FILE,
  MODEL_WEIGHTS_FILE,
  mixTerms,
  type NamedTensor,
  parseModelConfig,
  readSafetensors,
  serializeSafetensors,
  toFloat32,
  writeArtifact,
} from '../src/lib.ts';
import { listedFilesDigest, mixRecipe } from '../src/plan.ts';
import { FIXTURES, type FixtureName, greedy, json, post, putStories, REFS, reg, STORIES, tenantWithFixtures } from './helpers.ts';

interface Served {
  lora_edge: { mode: string; recipe: string; adapters: { id: string; weight: number }[] };
  choices: { token_ids: number[] }[];
}

interface MergeCall {
  method: string;
  path: string;
  authorization: string;
  body: string;
}

async function mergeCalls(): Promise<MergeCall[]> {
  return (await (await env.MERGE.fetch('https://merge.stub/__calls')).json()) as MergeCall[];
}

/** What the merge service writes for a linear fused mix: W' = W + Σ wᵢ·sᵢ·Bᵢ·Aᵢ in the base's dtype. */
async function writeFused(recipe: string, config: string, weights: Uint8Array, mix: { fixture: FixtureName; weight: number }[]) {
  const model = readSafetensors(weights);
  const modelConfig = parseModelConfig(config);
  const terms = mixTerms(
    mix.map((m) => {
      const adapter = loadLoraAdapter({ configText: FIXTURES[m.fixture].config, weights: FIXTURES[m.fixture].weights });
      fitAdapterToModel(adapter, modelConfig);
      return { name: m.fixture, adapter, weight: m.weight };
    }),
  );
  const out: NamedTensor[] = model.header.tensors.map((info) => {
    const raw = model.tensor(info.name);
    const t = info.name.endsWith('.weight') ? terms.get(info.name.slice(0, -'.weight'.length)) : undefined;
    if (!t) return { name: info.name, ...raw };
    const [rows, cols] = raw.shape as [number, number];
    return { name: info.name, ...fromFloat32(fuseModule(toFloat32(raw), rows, cols, t), raw.dtype, raw.shape) };
  });
  await writeArtifact(
    env.BLOBS,
    recipe,
    'fused',
    [
      { name: MODEL_CONFIG_FILE, data: config },
      { name: MODEL_WEIGHTS_FILE, data: serializeSafetensors(out) },
    ],
    { op: 'fuse', semantics: 'exact' },
  );
}

let t: { id: string; key: string };

beforeAll(async () => {
  await putStories();
  t = await tenantWithFixtures('plan');
});

describe('plan and merge-ahead', () => {
  it('counts unmerged hits, asks for a merge at the threshold, then serves the fused artifact', async () => {
    const { mix } = REFS;
    const adapters = mix.adapters.map((id, i) => ({ id, weight: mix.weights[i]! }));
    const request = greedy(STORIES, mix.prompt_ids, mix.n_generated, { adapters });
    const threshold = Number(env.MERGE_THRESHOLD);
    expect(threshold).toBe(3);

    let recipe = '';
    for (let i = 1; i <= threshold; i++) {
      const r = await json<Served>(await post('/v1/completions', request, t.key));
      expect(r.lora_edge.mode).toBe('unmerged');
      expect(r.choices[0]?.token_ids).toEqual(mix.greedy_ids_unmerged);
      recipe = r.lora_edge.recipe;
      // The hit is counted after the response, in waitUntil: wait for it to land.
      await expect.poll(async () => (await reg().getHits(recipe))?.count).toBe(i);
      const asked = (await mergeCalls()).filter((c) => c.path === '/v1/merges' && c.body.includes(`${t.id}/tiny-qv-r4`));
      expect(asked.length).toBe(i >= threshold ? 1 : 0);
    }
    const [call] = (await mergeCalls()).filter((c) => c.path === '/v1/merges' && c.body.includes(`${t.id}/tiny-qv-r4`));
    expect(call?.authorization).toBe(`Bearer ${t.key}`);
    expect(JSON.parse(call!.body)).toEqual({
      base: STORIES,
      adapters: adapters.map((a) => ({ id: `${t.id}/${a.id}`, weight: a.weight })),
      method: 'linear',
      output: 'fused',
    });

    // The merge service would now write the artifact under the same recipe key.
    const base = await reg().getModel(STORIES);
    const stories = await env.BLOBS.get(`models/${base!.digest}/model.safetensors`);
    const config = await (await env.BLOBS.get(`models/${base!.digest}/config.json`))!.text();
    await writeFused(
      recipe,
      config,
      new Uint8Array(await stories!.arrayBuffer()),
      mix.adapters.map((a, i) => ({ fixture: a as FixtureName, weight: mix.weights[i]! })),
    );

    const merged = await post('/v1/completions', request, t.key);
    const body = await json<Served>(merged);
    expect(body.lora_edge).toMatchObject({ mode: 'merged', recipe });
    expect(merged.headers.get('x-lora-edge-served-by')).toContain('mode=merged');
    expect(body.choices[0]?.token_ids).toEqual(mix.greedy_ids_fused);
    // The fused model now sits under models/<files digest>/, as infer reads models.
    const manifest = JSON.parse(await (await env.BLOBS.get(`artifacts/${recipe}/manifest.json`))!.text()) as {
      files: { name: string; sha256: string }[];
    };
    const digest = await listedFilesDigest(manifest.files);
    expect(await env.BLOBS.head(`models/${digest}/config.json`)).not.toBeNull();
    // Merged requests are not counted: the mix is served as hot as it gets.
    await new Promise((r) => setTimeout(r, 50));
    expect((await reg().getHits(recipe))?.count).toBe(threshold);
  });

  it('computes the recipe the merge service computes (base digest, sorted digests with weights, linear, fused)', async () => {
    const base = (await reg().getModel(STORIES))!;
    const a = (await reg().getAdapter(t.id, 'tiny-qv-r4'))!;
    const b = (await reg().getAdapter(t.id, 'tiny-all-r8'))!;
    const one = await mixRecipe({
      base,
      mix: [
        { adapter: a, weight: 0.5 },
        { adapter: b, weight: 0.5 },
      ],
      source: 'explicit',
    });
    const two = await mixRecipe({
      base,
      mix: [
        { adapter: b, weight: 0.5 },
        { adapter: a, weight: 0.5 },
      ],
      source: 'alias',
    });
    expect(one).toBe(two);
    expect(one).not.toBe(
      await mixRecipe({
        base,
        mix: [
          { adapter: a, weight: 0.5 },
          { adapter: b, weight: 0.25 },
        ],
        source: 'explicit',
      }),
    );
  });
});
