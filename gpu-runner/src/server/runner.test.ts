import { join } from 'node:path';
import { type gpu, readSafetensors, recipeKey, toFloat32 } from '@lora-edge/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADAPTERS, flatten, maxRelError, readJson, STORIES } from '../../../test/fixtures.ts';
import { loadBackend } from '../backend/index.ts';
import { type BlobSource, gatewayBlobs } from './blobs.ts';
import { silentLogger } from './log.ts';
import { type Runner, startRunner } from './runner.ts';
import { addAdapter, addStories, generateJob, removeTempDirs, TestGateway, TOKEN, testConfig } from './testing.ts';

interface Case {
  prompt_ids: number[];
  greedy_ids: number[];
}
const refs = readJson<{ cases: Case[] }>(join(STORIES, 'reference.json')).cases;
const qvRef = readJson<{ generations: { prompt_ids: number[]; greedy_ids_merged: number[] }[] }>(
  join(ADAPTERS, 'tiny-qv-r4', 'reference.json'),
);
// The native kernels when built (as the engine suites use), the js reference otherwise.
const backend = loadBackend('auto');

let gw: TestGateway;
let runner: Runner;
let model: { digest: string; bytes: number };
let n = 0;
const jobId = () => `job-${Date.now().toString(36)}-${n++}`;

/** The ids each post carried past what the gateway already held: every token exactly once when no post was lost. */
function deliveredInOrder(posts: { ev: gpu.JobEvents }[]): number[] {
  const out: number[] = [];
  for (const { ev } of posts) {
    expect(ev.from).toBeLessThanOrEqual(out.length);
    out.push(...ev.ids.slice(out.length - ev.from));
  }
  return out;
}

beforeAll(async () => {
  gw = await new TestGateway().start();
  model = await addStories(gw);
  runner = await startRunner(testConfig(gw.url), { backend, log: silentLogger });
  await runner.control.start();
});
afterAll(async () => {
  await runner?.close();
  await gw?.close();
  removeTempDirs();
});

describe('the runner against a gateway', () => {
  it('registers with its slots, kinds and load, and heartbeats', async () => {
    await gw.until(() => gw.heartbeats.length > 0, 10_000, 'a heartbeat');
    const reg = gw.registrations[0]!;
    expect(reg).toMatchObject({ id: 'r1', url: runner.url, slots: 4, kinds: ['generate', 'merge'], backend: backend.name });
    expect(reg.load).toMatchObject({ active: 0, queued: 0, draining: false });
  });

  it.each(refs.map((c, i) => [i, c] as const))('stories260k prompt %i: the greedy ids arrive in order, exactly once', async (_, c) => {
    const id = jobId();
    gw.newJob(id, c.greedy_ids.length);
    const r = await gw.dispatch(runner.url, generateJob(id, model.digest, c.prompt_ids, c.greedy_ids.length));
    expect(r).toEqual({ status: 202, body: { accepted: true, id, attempt: 1 } });
    await gw.until(() => gw.jobs.get(id)!.status === 'done', 20_000, 'the job to finish');
    const job = gw.jobs.get(id)!;
    expect(job.ids).toEqual(c.greedy_ids);
    const posts = gw.postsOf(id);
    expect(deliveredInOrder(posts)).toEqual(c.greedy_ids);
    // No post repeated ids the gateway had acknowledged.
    expect(posts.reduce((s, p) => s + p.ev.ids.length, 0)).toBe(c.greedy_ids.length);
    expect(job.finish).toMatchObject({ finish_reason: 'length', prompt_tokens: c.prompt_ids.length });
    expect(posts.filter((p) => p.ev.done)).toHaveLength(1);
  });

  it('runs an adapter job (tiny-qv-r4, unmerged): the PEFT greedy ids', async () => {
    const digest = await addAdapter(gw, 'tiny-qv-r4');
    for (const [i, g] of qvRef.generations.entries()) {
      const id = jobId();
      gw.newJob(id, g.greedy_ids_merged.length);
      const job = generateJob(id, model.digest, g.prompt_ids, g.greedy_ids_merged.length, {
        adapters: [{ tenant: 'acme', name: 'tiny-qv-r4', digest, weight: 1 }],
        mode: i % 2 ? 'merged' : 'unmerged',
      });
      expect((await gw.dispatch(runner.url, job)).status).toBe(202);
      await gw.until(() => gw.jobs.get(id)!.status === 'done', 20_000, 'the adapter job');
      expect(gw.jobs.get(id)!.ids).toEqual(g.greedy_ids_merged);
    }
  });

  it('resumes after k delivered ids (attempt 2): the remaining reference ids, posted from k', async () => {
    const c = refs[1]!;
    for (const k of [1, 17]) {
      const id = jobId();
      const held = c.greedy_ids.slice(0, k);
      gw.newJob(id, c.greedy_ids.length, 2, held);
      const body = generateJob(id, model.digest, c.prompt_ids, c.greedy_ids.length, {}, 2, held);
      expect((await gw.dispatch(runner.url, body)).status).toBe(202);
      await gw.until(() => gw.jobs.get(id)!.status === 'done', 20_000, 'the resumed job');
      expect(gw.jobs.get(id)!.ids).toEqual(c.greedy_ids);
      const posts = gw.postsOf(id);
      expect(posts[0]!.ev.from).toBe(k);
      expect(posts.reduce((s, p) => s + p.ev.ids.length, 0)).toBe(c.greedy_ids.length - k);
    }
  });

  it('resumes a seeded sampled stream where it was cut', async () => {
    const over = { temperature: 0.8, top_k: 0, top_p: 1, seed: 4242 };
    const whole = jobId();
    gw.newJob(whole, 30);
    await gw.dispatch(runner.url, generateJob(whole, model.digest, [1], 30, over));
    await gw.until(() => gw.jobs.get(whole)!.status === 'done');
    const full = gw.jobs.get(whole)!.ids;
    const id = jobId();
    gw.newJob(id, 30, 2, full.slice(0, 11));
    await gw.dispatch(runner.url, generateJob(id, model.digest, [1], 30, over, 2, full.slice(0, 11)));
    await gw.until(() => gw.jobs.get(id)!.status === 'done');
    expect(gw.jobs.get(id)!.ids).toEqual(full);
  });

  it('refuses a wrong or missing token with 401 and runs nothing', async () => {
    const id = jobId();
    const body = generateJob(id, model.digest, [1], 4);
    const wrong = await gw.dispatch(runner.url, body, 'not-the-token');
    expect(wrong).toEqual({ status: 401, body: { error: { code: 'unauthorized', message: expect.any(String), retryable: false } } });
    const none = await fetch(`${runner.url}/v1/jobs`, { method: 'POST', body: JSON.stringify(body) });
    expect(none.status).toBe(401);
    expect((await fetch(`${runner.url}/v1/status`)).status).toBe(401);
    await new Promise((r) => setTimeout(r, 100));
    expect(gw.postsOf(id)).toEqual([]);
    expect(runner.jobs.jobs.map((j) => j.job.id)).not.toContain(id);
  });

  it('refuses a malformed job with 400 job_invalid, not retryable', async () => {
    for (const body of ['{', JSON.stringify({ kind: 'generate', id: 'x' }), JSON.stringify({ ...generateJob(jobId(), 'abc', [1], 4) })]) {
      const r = await gw.dispatch(runner.url, body);
      expect(r.status).toBe(400);
      expect(r.body).toMatchObject({ error: { code: 'job_invalid', retryable: false } });
    }
  });

  it('builds a fused merge artifact with the merge service code, manifest last (PEFT reference weights)', async () => {
    const adapter = await addAdapter(gw, 'tiny-qv-r4', 'acme', 'qv-merge');
    const recipe = {
      base: model.digest,
      adapters: [{ digest: adapter, weight: 1 }],
      method: 'linear' as const,
      options: {},
      output: 'fused' as const,
    };
    const key = await recipeKey(recipe);
    const payload = {
      kind: 'merge',
      recipe_key: key,
      recipe,
      base: { id: 'stories260k', digest: model.digest },
      adapters: [{ id: 'acme/qv-merge', tenant: 'acme', name: 'qv-merge', digest: adapter, weight: 1, peft_type: 'LORA', use_dora: false }],
      method: 'linear',
    };
    const id = jobId();
    gw.newJob(id, 0);
    const r = await gw.dispatch(runner.url, {
      kind: 'merge',
      id,
      attempt: 1,
      spec: { merge_job: key, recipe: key, params: payload, bytes: model.bytes },
    });
    expect(r.status).toBe(202);
    await gw.until(() => gw.jobs.get(id)!.status !== 'running', 60_000, 'the merge build');
    const job = gw.jobs.get(id)!;
    expect(job.status).toBe('done');
    expect(job.finish?.artifact).toMatchObject({ artifact: key, files: ['config.json', 'model.safetensors'] });
    // The build's progress went along with the keep-alives.
    expect(gw.postsOf(id).some((p) => p.ev.progress !== undefined)).toBe(true);
    // The manifest went last: every file before it.
    const puts = gw.blobPuts.filter((k) => k.startsWith(`artifacts/${key}/`));
    expect(puts.at(-1)).toBe(`artifacts/${key}/manifest.json`);
    const fused = readSafetensors(gw.blobs.get(`artifacts/${key}/model.safetensors`)!);
    const ref = readJson<{ merged_modules: Record<string, { merged_weight: number[][] }> }>(join(ADAPTERS, 'tiny-qv-r4', 'reference.json'));
    for (const [module, m] of Object.entries(ref.merged_modules)) {
      const got = toFloat32(fused.tensor(`${module}.weight`));
      expect(maxRelError(got, flatten(m.merged_weight))).toBeLessThan(1e-6);
    }
  }, 90_000);

  it('fails a merge whose payload is invalid, for good (not retryable)', async () => {
    const id = jobId();
    gw.newJob(id, 0);
    const r = await gw.dispatch(runner.url, {
      kind: 'merge',
      id,
      attempt: 1,
      spec: { merge_job: 'm1', recipe: model.digest, params: { kind: 'merge' } },
    });
    expect(r.status).toBe(202);
    await gw.until(() => gw.jobs.get(id)!.status !== 'running', 30_000, 'the refusal');
    expect(gw.jobs.get(id)!.status).toBe('failed');
    expect(gw.jobs.get(id)!.error).toMatchObject({ code: 'invalid_argument' });
  }, 40_000);

  it('refuses a model larger than LORA_EDGE_MAX_MODEL_BYTES (declared: 422; discovered: a retryable error event)', async () => {
    const declared = await gw.dispatch(
      runner.url,
      generateJob(jobId(), model.digest, [1], 4, { model: { digest: model.digest, bytes: 2 ** 40 } }),
    );
    expect(declared).toMatchObject({ status: 422, body: { error: { code: 'model_too_large', retryable: true } } });
    const small = await startRunner(testConfig(gw.url, { id: 'r-small', maxModelBytes: 1000 }), { backend, log: silentLogger });
    try {
      const id = jobId();
      gw.newJob(id, 4, 1, [], 'r-small');
      expect((await gw.dispatch(small.url, generateJob(id, model.digest, [1], 4))).status).toBe(202);
      await gw.until(() => gw.jobs.get(id)!.attempts[0]!.state === 'failed', 10_000, 'the refusal event');
      expect(gw.postsOf(id).at(-1)!.ev.error).toMatchObject({ code: 'model_too_large', retryable: true });
    } finally {
      await small.close();
    }
  });

  it('runs a job posted twice (same id and attempt) once', async () => {
    const c = refs[2]!;
    const id = jobId();
    gw.newJob(id, 20);
    const body = generateJob(id, model.digest, c.prompt_ids, 20);
    const [a, b] = await Promise.all([gw.dispatch(runner.url, body), gw.dispatch(runner.url, body)]);
    expect([a.status, b.status]).toEqual([202, 202]);
    await gw.until(() => gw.jobs.get(id)!.status === 'done');
    expect((await gw.dispatch(runner.url, body)).status).toBe(202); // after the end, too
    await new Promise((r) => setTimeout(r, 200));
    const posts = gw.postsOf(id);
    expect(posts.filter((p) => p.ev.done)).toHaveLength(1);
    expect(posts.reduce((s, p) => s + p.ev.ids.length, 0)).toBe(20);
    expect(gw.jobs.get(id)!.ids).toEqual(c.greedy_ids.slice(0, 20));
  });

  it('cancels the engine sequence when the gateway answers current:false', async () => {
    const id = jobId();
    gw.newJob(id, 500);
    // The first post with ids is taken; the next one is told the attempt is no longer current.
    let withIds = 0;
    gw.eventsHook = (_job, ev) => (ev.ids.length > 0 && withIds++ > 0 ? { next: ev.from + ev.ids.length, current: false } : undefined);
    try {
      expect((await gw.dispatch(runner.url, generateJob(id, model.digest, [1], 500))).status).toBe(202);
      const live = runner.jobs.jobs.find((j) => j.job.id === id)!;
      await gw.until(() => !runner.jobs.jobs.some((j) => j.job.id === id), 10_000, 'the job to end');
      const engine = runner.models.peek(model.digest)!;
      expect(engine.load.running).toBe(0);
      expect(runner.jobs.load()).toMatchObject({ active: 0, kv_free_bytes: runner.config.kvBytes });
      const posts = gw.postsOf(id);
      expect(posts.filter((p) => p.ev.ids.length > 0)).toHaveLength(2); // nothing after the fence
      expect(posts.some((p) => p.ev.done)).toBe(false);
      expect(live.cancelled).toBe('fenced');
      const cut = await live.handle!.result;
      expect(cut.ids.length).toBeLessThan(500);
    } finally {
      gw.eventsHook = undefined;
    }
  });

  it('sends the events of concurrent jobs together in batches', async () => {
    const before = gw.batches.length;
    const ids = refs.map(() => jobId());
    for (const [i, c] of refs.entries()) gw.newJob(ids[i] as string, c.greedy_ids.length);
    await Promise.all(
      refs.map((c, i) => gw.dispatch(runner.url, generateJob(ids[i] as string, model.digest, c.prompt_ids, c.greedy_ids.length))),
    );
    await gw.until(() => ids.every((id) => gw.jobs.get(id)!.status === 'done'), 20_000, 'the jobs');
    for (const [i, c] of refs.entries()) expect(gw.jobs.get(ids[i] as string)!.ids).toEqual(c.greedy_ids);
    expect(Math.max(...gw.batches.slice(before))).toBeGreaterThan(1);
  });

  it('resends from `next` when the gateway reports fewer ids than were posted', async () => {
    const c = refs[3]!;
    const id = jobId();
    gw.newJob(id, c.greedy_ids.length);
    let lost = false;
    // The first post carrying ids is "lost": acknowledged as if none arrived, and not applied.
    gw.eventsHook = (job, ev) => {
      if (lost || ev.ids.length === 0) return undefined;
      lost = true;
      return { next: job.ids.length, current: true };
    };
    try {
      await gw.dispatch(runner.url, generateJob(id, model.digest, c.prompt_ids, c.greedy_ids.length));
      await gw.until(() => gw.jobs.get(id)!.status === 'done');
      expect(gw.jobs.get(id)!.ids).toEqual(c.greedy_ids);
      const posts = gw.postsOf(id).filter((p) => p.ev.ids.length > 0);
      expect(posts[1]!.ev.from).toBe(0); // resent from the start
    } finally {
      gw.eventsHook = undefined;
    }
  });

  it('retries events posts the gateway fails (5xx) and delivers every id', async () => {
    const c = refs[0]!;
    const id = jobId();
    gw.newJob(id, c.greedy_ids.length);
    gw.eventsHook = (_job, ev, i) => (i < 3 && ev.ids.length > 0 ? { status: 503 } : undefined);
    try {
      await gw.dispatch(runner.url, generateJob(id, model.digest, c.prompt_ids, c.greedy_ids.length));
      await gw.until(() => gw.jobs.get(id)!.status === 'done');
      expect(gw.jobs.get(id)!.ids).toEqual(c.greedy_ids);
    } finally {
      gw.eventsHook = undefined;
    }
  });

  it('keeps one events post in flight at a time (tokens wait for the next post)', async () => {
    const id = jobId();
    gw.newJob(id, 8);
    // Hold the first reply: the job's tokens wait, the runner must still not post two at once.
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    let inFlight = 0;
    let maxInFlight = 0;
    gw.eventsHook = async (_job, _ev, i) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      if (i === 0) await held;
      inFlight--;
      return undefined;
    };
    try {
      await gw.dispatch(runner.url, generateJob(id, model.digest, [1], 8));
      await new Promise((r) => setTimeout(r, 300));
      release();
      await gw.until(() => gw.jobs.get(id)!.status === 'done');
      expect(maxInFlight).toBe(1);
      expect(gw.jobs.get(id)!.ids).toHaveLength(8);
    } finally {
      gw.eventsHook = undefined;
    }
  });

  it('keeps the lease with empty posts while the model loads', async () => {
    const slow: BlobSource = {
      kind: 'gateway',
      async get(key) {
        await new Promise((r) => setTimeout(r, 450));
        return gatewayBlobs(gw.url, TOKEN).get(key);
      },
    };
    const r = await startRunner(testConfig(gw.url, { id: 'r-slow' }), { backend, log: silentLogger, blobs: slow });
    try {
      await r.control.start();
      const id = jobId();
      gw.newJob(id, 4, 1, [], 'r-slow');
      await gw.dispatch(r.url, generateJob(id, model.digest, [1], 4));
      await gw.until(() => gw.jobs.get(id)!.status === 'done');
      const posts = gw.postsOf(id);
      const firstIds = posts.findIndex((p) => p.ev.ids.length > 0);
      expect(firstIds).toBeGreaterThanOrEqual(2);
      expect(posts.slice(0, firstIds).every((p) => p.ev.ids.length === 0 && p.ev.from === 0)).toBe(true);
    } finally {
      await r.close();
    }
  });

  it('gives a job up (cancels it) when the gateway stays unreachable past the lease', async () => {
    gw.leaseMs = 400;
    const r = await startRunner(testConfig(gw.url, { id: 'r-lease' }), { backend, log: silentLogger });
    try {
      await r.control.start();
      gw.leaseMs = 3_000;
      expect(r.control.leaseMs).toBe(400);
      const id = jobId();
      gw.newJob(id, 500, 1, [], 'r-lease');
      gw.eventsHook = (job) => (job.id === id ? { status: 503 } : undefined);
      await gw.dispatch(r.url, generateJob(id, model.digest, [1], 500));
      const live = r.jobs.jobs.find((j) => j.job.id === id)!;
      expect(await live.ended).toBe('unreachable');
      expect(live.cancelled).toBe('unreachable');
      expect(r.models.peek(model.digest)!.load.running).toBe(0);
      expect(r.jobs.load().active).toBe(0);
    } finally {
      gw.leaseMs = 3_000;
      gw.eventsHook = undefined;
      await r.close();
    }
  });

  it('ends a job the engine refuses with a non-retryable error of its own code', async () => {
    const id = jobId();
    gw.newJob(id, 600);
    await gw.dispatch(runner.url, generateJob(id, model.digest, [1, 2], 600));
    await gw.until(() => gw.jobs.get(id)!.status === 'failed', 10_000, 'the job to fail');
    expect(gw.postsOf(id).at(-1)!.ev.error).toMatchObject({ code: 'invalid_argument', retryable: false });
    expect(gw.jobs.get(id)!.error).toMatchObject({ code: 'invalid_argument' });
  });

  it('reports its status and health', async () => {
    const s = await fetch(`${runner.url}/v1/status`, { headers: { authorization: `Bearer ${runner.config.token}` } });
    expect(await s.json()).toMatchObject({ id: 'r1', load: { draining: false }, jobs: expect.any(Array) });
    expect(await (await fetch(`${runner.url}/healthz`)).json()).toEqual({ status: 'ok' });
  });
});

describe('draining', () => {
  it('finishes in-flight jobs and refuses new ones meanwhile', async () => {
    const r = await startRunner(testConfig(gw.url, { id: 'r-drain' }), { backend, log: silentLogger });
    try {
      const id = jobId();
      gw.newJob(id, 300, 1, [], 'r-drain');
      await gw.dispatch(r.url, generateJob(id, model.digest, [1], 300));
      await gw.until(() => gw.postsOf(id).some((p) => p.ev.ids.length > 0), 10_000, 'tokens');
      const drained = r.jobs.drain(30_000);
      const refused = await gw.dispatch(r.url, generateJob(jobId(), model.digest, [1], 4));
      expect(refused).toMatchObject({ status: 503, body: { error: { code: 'runner_draining', retryable: true } } });
      expect(await (await fetch(`${r.url}/healthz`)).json()).toEqual({ status: 'draining' });
      expect(await drained).toEqual({ finished: 1, handedBack: 0 });
      expect(gw.jobs.get(id)!.status).toBe('done');
      expect(gw.jobs.get(id)!.ids).toHaveLength(300);
    } finally {
      await r.close();
    }
  });

  it('hands jobs still running at the deadline back with a retryable runner_draining error', async () => {
    const r = await startRunner(testConfig(gw.url, { id: 'r-drain2' }), { backend, log: silentLogger });
    try {
      const id = jobId();
      gw.newJob(id, 500, 1, [], 'r-drain2');
      await gw.dispatch(r.url, generateJob(id, model.digest, [1], 500));
      await gw.until(() => gw.postsOf(id).some((p) => p.ev.ids.length > 0), 10_000, 'tokens');
      expect(await r.jobs.drain(0)).toEqual({ finished: 0, handedBack: 1 });
      const job = gw.jobs.get(id)!;
      expect(job.attempts[0]).toMatchObject({ state: 'failed', error: { code: 'runner_draining' } });
      expect(gw.postsOf(id).at(-1)!.ev.error).toMatchObject({ code: 'runner_draining', retryable: true });
      // What it delivered stands: the next attempt resumes after it.
      expect(job.ids.length).toBeGreaterThan(0);
      expect(job.ids.length).toBeLessThan(500);
      expect(r.models.peek(model.digest)!.load.running).toBe(0);
    } finally {
      await r.close();
    }
  });
});
