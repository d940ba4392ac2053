import { env } from 'cloudflare:workers';
import { loadLoraAdapter, type MergeAdapter, mergeAdapters, readSafetensors, seededRandomSource, toFloat32 } from '@lora-edge/shared';
import { beforeAll, describe, expect, it } from 'vitest';
import type { JobView } from '../src/jobs/types.ts';
import { artifactKey, listAll, recipeKey } from '../src/lib.ts';
import {
  auth,
  call,
  errorOf,
  FIXTURES,
  type FixtureName,
  HF_SECRET,
  jsonInit,
  newTenant,
  registerStories,
  signedWebhook,
  uploadOk,
  waitForJob,
} from './helpers.ts';

let baseDigest = '';
beforeAll(async () => {
  baseDigest = (await registerStories()).digest;
});

interface Answer {
  job: JobView;
  recipe?: string;
}

let nth = 0;
/**
 * A tenant with tiny-all-r8 and tiny-lori-r8, and a dare_ties merge event for them. Artifacts
 * are content-addressed across tenants, so each call gets its own weights: its own recipe.
 */
async function setup() {
  const w = 0.6 + 0.01 * nth++;
  const t = await newTenant('wh');
  const all = await uploadOk(t.key, 'all', 'tiny-all-r8');
  const lori = await uploadOk(t.key, 'lori', 'tiny-lori-r8');
  const merge = {
    base: 'stories260k',
    adapters: [
      { id: 'all', weight: w },
      { id: 'lori', weight: 0.4 },
    ],
    method: 'dare_ties',
    options: { density: 0.5, seed: 3 },
  };
  const body = JSON.stringify({ type: 'merge', tenant: t.id, merge });
  const recipe = await recipeKey({
    base: baseDigest,
    adapters: [
      { digest: all.digest, weight: w },
      { digest: lori.digest, weight: 0.4 },
    ],
    method: 'dare_ties',
    options: { density: 0.5, seed: 3 },
    output: 'adapter',
  });
  return { t, all, lori, body, recipe, w };
}

async function expectNoJob(key: string, recipe: string): Promise<void> {
  expect(await errorOf(await call(`/v1/jobs/${recipe}`, auth(key)))).toMatchObject({ status: 404, code: 'job_not_found' });
  expect(await listAll(env.BLOBS, `artifacts/${recipe}/`)).toEqual([]);
}

describe('POST /webhooks/generic', () => {
  it('runs the merge it carries; the artifact equals shared/mergeAdapters for the same recipe', async () => {
    const { t, all, lori, body, recipe, w } = await setup();
    const res = await call('/webhooks/generic', await signedWebhook(body));
    expect(res.status, await res.clone().text()).toBe(202);
    const answer = (await res.json()) as Answer;
    expect(answer.recipe).toBe(recipe);
    const job = await waitForJob(t.key, recipe);
    expect(job.state, JSON.stringify(job.error)).toBe('succeeded');

    const st = readSafetensors(
      new Uint8Array(await (await env.BLOBS.get(artifactKey(recipe, 'adapter_model.safetensors')))!.arrayBuffer()),
    );
    // Independently: adapters in digest order, one seeded DARE stream across modules in layer order.
    const inputs = [
      { fixture: 'tiny-all-r8' as FixtureName, digest: all.digest, weight: w },
      { fixture: 'tiny-lori-r8' as FixtureName, digest: lori.digest, weight: 0.4 },
    ].sort((a, b) => (a.digest < b.digest ? -1 : 1));
    const loaded = inputs.map((i) => ({
      ...i,
      adapter: loadLoraAdapter({ configText: FIXTURES[i.fixture].config, weights: FIXTURES[i.fixture].weights }),
    }));
    const modules = [...loaded[0]!.adapter.modules.keys()]
      .filter((m) => loaded.every((l) => l.adapter.modules.has(m)))
      .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    const random = seededRandomSource(3);
    for (const module of modules) {
      const parts: MergeAdapter[] = loaded.map((l) => {
        const m = l.adapter.modules.get(module)!;
        return { name: l.fixture, lora_A: toFloat32(m.A), lora_B: toFloat32(m.B), r: m.r, scaling: m.scaling, weight: l.weight };
      });
      const want = mergeAdapters(parts, { method: 'dare_ties', density: 0.5, random });
      expect(toFloat32(st.tensor(`base_model.model.${module}.lora_A.weight`)), module).toEqual(want.lora_A);
      expect(toFloat32(st.tensor(`base_model.model.${module}.lora_B.weight`)), module).toEqual(want.lora_B);
    }
  });

  it('refuses a bad signature (401, no job)', async () => {
    const { t, body, recipe } = await setup();
    const e = await errorOf(await call('/webhooks/generic', await signedWebhook(body, { secret: 'wrong' })));
    expect(e).toMatchObject({ status: 401, code: 'signature_invalid' });
    const tampered = await signedWebhook(body);
    tampered.body = body.replace('"seed":3', '"seed":5');
    expect(await errorOf(await call('/webhooks/generic', tampered))).toMatchObject({ status: 401, code: 'signature_invalid' });
    expect(await errorOf(await call('/webhooks/generic', { method: 'POST', body }))).toMatchObject({
      status: 401,
      code: 'signature_missing',
    });
    await expectNoJob(t.key, recipe);
  });

  it('refuses a stale or future timestamp (401)', async () => {
    const { t, body, recipe } = await setup();
    const now = Math.floor(Date.now() / 1000);
    expect(await errorOf(await call('/webhooks/generic', await signedWebhook(body, { ts: now - 301 })))).toMatchObject({
      status: 401,
      code: 'timestamp_stale',
    });
    expect(await errorOf(await call('/webhooks/generic', await signedWebhook(body, { ts: now + 400 })))).toMatchObject({
      status: 401,
      code: 'timestamp_stale',
    });
    await expectNoJob(t.key, recipe);
  });

  it('refuses a replay (401), also when both copies arrive at once', async () => {
    const { body } = await setup();
    const init = await signedWebhook(body);
    expect((await call('/webhooks/generic', init)).status).toBe(202);
    expect(await errorOf(await call('/webhooks/generic', init))).toMatchObject({ status: 401, code: 'webhook_replayed' });

    const twin = await signedWebhook(body.replace('"seed":3', '"seed":4'));
    const statuses = (await Promise.all([call('/webhooks/generic', twin), call('/webhooks/generic', twin)])).map((r) => r.status).sort();
    expect(statuses).toEqual([202, 401]);
  });

  it('computes once under two concurrent deliveries of the same recipe', async () => {
    const { t, body, recipe } = await setup();
    const now = Math.floor(Date.now() / 1000);
    const [a, b] = await Promise.all([
      call('/webhooks/generic', await signedWebhook(body, { ts: now })),
      call('/webhooks/generic', await signedWebhook(body, { ts: now - 1 })),
    ]);
    expect([a.status, b.status]).toEqual([202, 202]);
    const [ja, jb] = (await Promise.all([a.json(), b.json()])) as [Answer, Answer];
    expect(ja.job.id).toBe(recipe);
    expect(jb.job.id).toBe(recipe);
    const job = await waitForJob(t.key, recipe);
    expect(job.state).toBe('succeeded');
    expect(job.attempts).toBe(1);
    expect(job.history.filter((h) => h.state === 'running')).toHaveLength(1);
    const objects = await listAll(env.BLOBS, `artifacts/${recipe}/`);
    expect(objects.map((o) => o.key.split('/').pop()).sort()).toEqual([
      'adapter_config.json',
      'adapter_model.safetensors',
      'manifest.json',
    ]);
  });

  it('refuses bodies that are not events (after the signature checks out)', async () => {
    const { t } = await setup();
    expect(await errorOf(await call('/webhooks/generic', await signedWebhook('{"type":')))).toMatchObject({
      status: 400,
      code: 'invalid_json',
    });
    expect(await errorOf(await call('/webhooks/generic', await signedWebhook('{"type":"delete"}')))).toMatchObject({
      status: 400,
      code: 'invalid_request',
    });
    const ghost = JSON.stringify({ type: 'merge', tenant: 'ghost', merge: { base: 'stories260k', adapters: [{ id: 'all' }] } });
    expect(await errorOf(await call('/webhooks/generic', await signedWebhook(ghost)))).toMatchObject({
      status: 422,
      code: 'tenant_unknown',
    });
    const unknown = JSON.stringify({ type: 'merge', tenant: t.id, merge: { base: 'stories260k', adapters: [{ id: 'nope' }] } });
    expect(await errorOf(await call('/webhooks/generic', await signedWebhook(unknown)))).toMatchObject({
      status: 422,
      code: 'adapter_unknown',
    });
  });

  it('imports an adapter by URL (fetch → validate → register), then runs the merges it names', async () => {
    const t = await newTenant('wh');
    const body = JSON.stringify({
      type: 'adapter',
      tenant: t.id,
      adapter: { name: 'hooked', url: 'https://huggingface.co/lora-edge-test/tiny-qv-r4', base: 'stories260k' },
      merges: [{ base: 'stories260k', adapters: [{ id: 'hooked', weight: 0.5 }], output: 'fused' }],
    });
    const res = await call('/webhooks/generic', await signedWebhook(body));
    expect(res.status, await res.clone().text()).toBe(202);
    const { job } = (await res.json()) as Answer;
    expect(job.kind).toBe('import');
    const done = await waitForJob(t.key, job.id);
    expect(done.state, JSON.stringify(done.error)).toBe('succeeded');
    expect(done.result).toMatchObject({ adapter: `${t.id}/hooked`, changed: true });
    const followup = (done.result!.followups as { job: string }[])[0]!;
    const merged = await waitForJob(t.key, followup.job);
    expect(merged.state, JSON.stringify(merged.error)).toBe('succeeded');
    expect((await call(`/v1/artifacts/${followup.job}`, auth(t.key))).status).toBe(200);
  });

  it('fails an import job whose adapter does not fit, with the refusal recorded', async () => {
    const t = await newTenant('wh');
    const body = JSON.stringify({
      type: 'adapter',
      tenant: t.id,
      adapter: { name: 'gone', url: 'https://huggingface.co/lora-edge-test/missing', base: 'stories260k' },
    });
    const res = await call('/webhooks/generic', await signedWebhook(body));
    const { job } = (await res.json()) as Answer;
    const done = await waitForJob(t.key, job.id);
    expect(done).toMatchObject({ state: 'failed', attempts: 1, error: { code: 'source_not_found' } });
    expect(await listAll(env.BLOBS, `adapters/${t.id}/`)).toEqual([]);
  });
});

describe('POST /webhooks/huggingface', () => {
  const hfPayload = (headSha: string, scope = 'repo.content') => ({
    event: { action: 'update', scope },
    repo: {
      type: 'model',
      name: 'lora-edge-test/evolving',
      id: '6500000000000000000000aa',
      private: false,
      url: { web: 'https://huggingface.co/lora-edge-test/evolving', api: 'https://huggingface.co/api/models/lora-edge-test/evolving' },
      headSha,
      owner: { id: '6400000000000000000000bb' },
    },
    updatedRefs: [{ ref: 'refs/heads/main', oldSha: '1'.repeat(40), newSha: headSha }],
    webhook: { id: '6600000000000000000000cc', version: 3 },
  });
  const hook = (payload: unknown, secret: string | null = HF_SECRET): RequestInit => ({
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(secret === null ? {} : { 'x-webhook-secret': secret }) },
    body: JSON.stringify(payload),
  });

  it('re-imports a watched adapter at the pushed commit', async () => {
    const t = await newTenant('hf');
    const reg = await call(
      '/v1/adapters',
      jsonInit(
        'POST',
        { url: 'https://huggingface.co/lora-edge-test/evolving', name: 'evo', base: 'stories260k', watch: true, examples: ['a story'] },
        t.key,
      ),
    );
    expect(reg.status, await reg.clone().text()).toBe(201);
    const before = ((await reg.json()) as { adapter: { digest: string; rank: number } }).adapter;
    expect(before.rank).toBe(4);

    const res = await call('/webhooks/huggingface', hook(hfPayload('2'.repeat(40))));
    expect(res.status, await res.clone().text()).toBe(202);
    const { jobs } = (await res.json()) as { jobs: { adapter: string; job: string }[] };
    expect(jobs.map((j) => j.adapter)).toEqual([`${t.id}/evo`]);
    const done = await waitForJob(t.key, jobs[0]!.job);
    expect(done.state, JSON.stringify(done.error)).toBe('succeeded');

    const after = ((await (await call('/v1/adapters/evo', auth(t.key))).json()) as { adapter: Record<string, unknown> }).adapter;
    expect(after).toMatchObject({ rank: 8, examples: ['a story'], watch: true, source: { kind: 'hf', revision: '2'.repeat(40) } });
    expect(after.digest).not.toBe(before.digest);

    // A redelivery joins the finished job: nothing is fetched or computed again.
    const again = (await (await call('/webhooks/huggingface', hook(hfPayload('2'.repeat(40))))).json()) as {
      jobs: { job: string; state: string }[];
    };
    expect(again.jobs[0]).toMatchObject({ job: jobs[0]!.job, state: 'succeeded' });
  });

  it('checks the secret in constant time and ignores other events', async () => {
    expect(await errorOf(await call('/webhooks/huggingface', hook(hfPayload('3'.repeat(40)), 'nope')))).toMatchObject({
      status: 401,
      code: 'webhook_secret_invalid',
    });
    expect(await errorOf(await call('/webhooks/huggingface', hook(hfPayload('3'.repeat(40)), null)))).toMatchObject({
      status: 401,
      code: 'webhook_secret_missing',
    });
    const ignored = await call('/webhooks/huggingface', hook(hfPayload('3'.repeat(40), 'discussion')));
    expect(ignored.status).toBe(200);
    expect(await ignored.json()).toMatchObject({ ignored: true });
    const unwatched = await call(
      '/webhooks/huggingface',
      hook({ ...hfPayload('3'.repeat(40)), repo: { type: 'model', name: 'someone/else', headSha: 'abc' } }),
    );
    expect(await unwatched.json()).toMatchObject({ ignored: true });
    expect(await errorOf(await call('/webhooks/huggingface', hook({ event: 'push' })))).toMatchObject({
      status: 400,
      code: 'invalid_request',
    });
  });
});
