/**
 * The gateway in workerd: the runner API's auth and validation, admission (429 / 503), the queue
 * consumer's hand-off rules, exactly-once tokens through a lost runner, dead letters. Runners are
 * played by the test through the real HTTP API (events) and by the outbound stand-ins of
 * vitest.config.ts (hand-off answers).
 */

import { runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { gpu } from '@lora-edge/shared';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { GpuRpc } from '../src/rpc.ts';

type SubmitResult = gpu.SubmitResult;

const TOKEN = 'test-runner-token';
const auth = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
const rpc = (exports as unknown as { GpuRpc: Rpc.Provider<GpuRpc> & GpuRpc }).GpuRpc;
const self = (exports as unknown as { default: Fetcher }).default;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const call = (path: string, body?: unknown, headers: Record<string, string> = auth) =>
  self.fetch(`http://gateway.test${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });

const load = { active: 0, queued: 0, kv_free_bytes: 1e9, kv_total_bytes: 1e9, adapter_free_bytes: 1e9, draining: false };
function registration(id: string, host: string, slots = 2, maxModel = 1e9, kinds = ['generate']) {
  return { id, url: `http://${host}`, slots, max_model_bytes: maxModel, backend: 'test', version: '0', kinds, load };
}

/** A runner that registers and keeps heartbeating (as the real one does) until stopped. */
function keepAlive(id: string, host: string, slots = 2, maxModel = 1e9, kinds = ['generate']): { stop(): void; ready: Promise<unknown> } {
  let on = true;
  const ready = call('/runners/register', registration(id, host, slots, maxModel, kinds));
  void (async () => {
    await ready;
    while (on) {
      await call(`/runners/${id}/heartbeat`, load);
      await sleep(50);
    }
  })();
  return {
    ready,
    stop: () => {
      on = false;
    },
  };
}

/** Lets runners registered by earlier tests lapse (storage is shared within the file). */
const lapse = () => sleep(600);

const spec = (maxTokens = 6, modelBytes = 1000): gpu.GenerationSpec => ({
  model: { digest: 'a'.repeat(64), bytes: modelBytes },
  adapters: [],
  mode: 'unmerged',
  prompt_ids: [1, 2, 3],
  max_tokens: maxTokens,
  temperature: 0,
  top_k: 0,
  top_p: 1,
  seed: 7,
  ignore_eos: true,
  stop_token_ids: [],
});

type Ev = { event?: string; data: Record<string, unknown> };
/** Reads SSE events until the stream ends. */
async function readAll(body: ReadableStream<Uint8Array>): Promise<Ev[]> {
  const text = await new Response(body).text();
  return text
    .split('\n\n')
    .filter((b) => b.trim())
    .map((block) => {
      const ev = /^event: (.*)$/m.exec(block)?.[1];
      const data = JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? 'null');
      return ev ? { event: ev, data } : { data };
    });
}

async function until<T>(f: () => Promise<T | undefined | null | false>, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(25);
  }
}

async function submitted(s = spec()): Promise<{ job: string; body: ReadableStream<Uint8Array> }> {
  const r = (await rpc.submit(s, 'tenant-a')) as SubmitResult;
  if (!r.ok) throw new Error(`refused: ${JSON.stringify(r)}`);
  return r;
}

const running = (job: string, attempt: number) =>
  until(async () => {
    const v = await rpc.status(job, 'tenant-a');
    const a = v?.attempts[attempt - 1];
    return a?.state === 'running' ? a : undefined;
  });

describe('runner API', () => {
  it('refuses a missing or wrong token and malformed bodies', async () => {
    expect((await call('/runners/register', registration('r1', 'ok.runner.test'), {})).status).toBe(401);
    expect((await call('/runners/register', registration('r1', 'ok.runner.test'), { authorization: 'Bearer nope' })).status).toBe(401);
    const bad = await call('/runners/register', { id: '../x', url: 'file:///etc' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { code: 'invalid_request' } });
    expect((await call('/runners/jobs/gen-00000000/events', { nope: 1 })).status).toBe(400);
  });

  it('registers runners, takes heartbeats and reports capacity', async () => {
    const reply = await call('/runners/register', registration('cap-1', 'ok.runner.test', 3));
    expect(gpu.RegisterReplySchema.parse(await reply.json())).toMatchObject({ heartbeat_ms: 100, lease_ms: 500 });
    expect(await (await call('/runners/cap-1/heartbeat', load)).json()).toEqual({ ok: true, known: true });
    expect(await (await call('/runners/ghost/heartbeat', load)).json()).toEqual({ ok: false, known: false });
    expect(await (await call('/runners/capacity')).json()).toMatchObject({ runners: 1, slots: 3, limit: 6, outstanding: 0 });
  });

  it('serves blobs to runners and lets them write only artifacts', async () => {
    await env.BLOBS.put('models/abc/config.json', '{"x":1}');
    const got = await call('/runners/blobs/models/abc/config.json');
    expect(await got.text()).toBe('{"x":1}');
    expect((await call('/runners/blobs/models/none')).status).toBe(404);
    expect((await call('/runners/blobs/tenants/secret')).status).toBe(404);
    const put = (key: string) => self.fetch(`http://gateway.test/runners/blobs/${key}`, { method: 'PUT', headers: auth, body: 'x' });
    expect((await put(`artifacts/${'b'.repeat(64)}/adapter_model.safetensors`)).status).toBe(201);
    expect((await put('models/abc/config.json')).status).toBe(400);
  });

  it('answers random event and registration bodies with 4xx, never 5xx (fuzz)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.jsonValue(),
        fc.constantFrom('/runners/register', '/runners/x/heartbeat', '/runners/jobs/gen-fuzz0001/events', '/runners/events'),
        async (v, path) => {
          const r = await call(path, v);
          expect(r.status).toBeGreaterThanOrEqual(200);
          expect(r.status).toBeLessThan(500);
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('admission', () => {
  it('503 with no runner; 429 with Retry-After beyond live slots × 2; nothing enqueued then', async () => {
    await lapse();
    const none = (await rpc.submit(spec(), 'tenant-a')) as SubmitResult;
    expect(none).toMatchObject({ ok: false, status: 503, error: { code: 'gpu_unavailable' } });
    const r = keepAlive('adm-1', 'busy.runner.test', 1);
    await r.ready;
    const a = await submitted();
    const b = await submitted();
    const c = (await rpc.submit(spec(), 'tenant-a')) as SubmitResult;
    expect(c).toMatchObject({ ok: false, status: 429, error: { code: 'gpu_busy' } });
    expect(c.ok ? 0 : c.retry_after_s).toBeGreaterThanOrEqual(1);
    expect(await (await call('/runners/capacity')).json()).toMatchObject({ outstanding: 2, limit: 2 });
    await a.body.cancel();
    await b.body.cancel();
    // Cancelled jobs leave the count.
    await until(async () => ((await (await call('/runners/capacity')).json()) as gpu.Capacity).outstanding === 0);
    r.stop();
  });
});

describe('jobs through runners', () => {
  it('streams every token exactly once, in order, through a lost runner; the retry shows in the status', async () => {
    await lapse();
    const r = keepAlive('eo-1', 'ok.runner.test');
    await r.ready;
    const { job, body } = await submitted(spec(6));
    await running(job, 1);
    const post = (attempt: number, from: number, ids: number[], extra = {}) =>
      call(`/runners/jobs/${job}/events`, { runner: 'eo-1', attempt, from, ids, ...extra }).then(
        (r) => r.json() as Promise<gpu.EventsReply>,
      );
    expect(await post(1, 0, [11, 12])).toEqual({ next: 2, current: true });
    expect(await post(1, 1, [12, 13])).toEqual({ next: 3, current: true }); // a resend overlapping what is held
    expect(await post(1, 5, [99])).toEqual({ next: 3, current: true }); // a gap: resend from 3
    // The runner goes silent: its lease lapses and attempt 2 is handed out, resuming after 3 tokens.
    const second = await running(job, 2);
    expect(second).toMatchObject({ n: 2, resumed_at_token: 3 });
    expect(await post(1, 3, [77])).toMatchObject({ current: false }); // the lost attempt is fenced off
    expect(await post(2, 3, [14, 15, 16], { done: { finish_reason: 'length', prompt_tokens: 3 } })).toEqual({ next: 6, current: true });
    const events = await readAll(body);
    const ids = events.flatMap((e) => (Array.isArray(e.data.ids) && !e.data.done ? (e.data.ids as number[]) : []));
    expect(ids).toEqual([11, 12, 13, 14, 15, 16]);
    expect(events.at(-1)?.data).toMatchObject({ done: true, finish_reason: 'length', ids: [11, 12, 13, 14, 15, 16], attempts: 2 });
    const status = await rpc.status(job, 'tenant-a');
    expect(status?.status).toBe('done');
    expect(status?.attempts.map((a) => [a.n, a.state, a.error?.code ?? null])).toEqual([
      [1, 'failed', 'runner_lost'],
      [2, 'done', null],
    ]);
    // Another tenant cannot see the job.
    expect(await rpc.status(job, 'tenant-b')).toBeNull();
    // A reader reconnecting after 4 tokens gets the rest and the end, nothing twice.
    const rest = await readAll(await rpc.resume(job, 4));
    expect(rest.map((e) => e.data)).toEqual([{ index: 4, ids: [15, 16] }, expect.objectContaining({ done: true })]);
    // Stored as appended chunks, one per post that brought new tokens; a fresh instance reads them back.
    const stub = env.JOBS.get(env.JOBS.idFromName(job));
    await runInDurableObject(stub, (instance, state) => {
      expect([...state.storage.kv.list({ prefix: 'ids:' })].map(([k]) => k)).toEqual([
        'ids:0000000000',
        'ids:0000000002',
        'ids:0000000003',
      ]);
      Object.assign(instance, { cached: undefined, persisted: 0 });
    });
    expect((await rpc.status(job, 'tenant-a'))?.tokens).toBe(6);
    const again = await readAll(await rpc.resume(job, 0));
    expect(again[0]?.data).toEqual({ index: 0, ids: [11, 12, 13, 14, 15, 16] });
    r.stop();
  });

  it("takes many jobs' events in one batch, answering each as its own route would", async () => {
    await lapse();
    const r = keepAlive('batch-1', 'ok.runner.test');
    await r.ready;
    const a = await submitted(spec(2));
    const b = await submitted(spec(2));
    await running(a.job, 1);
    await running(b.job, 1);
    const ev = (job: string, from: number, ids: number[], extra = {}) => ({ job, runner: 'batch-1', attempt: 1, from, ids, ...extra });
    const done = { done: { finish_reason: 'length', prompt_tokens: 3 } };
    const res = await call('/runners/events', {
      runner: 'batch-1',
      events: [ev(a.job, 0, [1, 2], done), ev(b.job, 0, [3]), ev('gen-unknown-0000', 0, [9]), { ...ev(b.job, 1, [4]), runner: 'other' }],
    });
    expect(gpu.BatchReplySchema.parse(await res.json()).replies).toEqual([
      { job: a.job, status: 200, next: 2, current: true },
      { job: b.job, status: 200, next: 1, current: true },
      { job: 'gen-unknown-0000', status: 200, next: 0, current: false },
      { job: b.job, status: 400, error: 'an event of another runner' },
    ]);
    expect((await readAll(a.body)).at(-1)?.data).toMatchObject({ done: true, ids: [1, 2] });
    await call('/runners/events', { runner: 'batch-1', events: [ev(b.job, 1, [4], done)] });
    expect((await readAll(b.body)).at(-1)?.data).toMatchObject({ done: true, ids: [3, 4] });
    r.stop();
  });

  it('dead-letters a job after its last attempt is lost; the client gets an error event', async () => {
    await lapse();
    const r = keepAlive('dl-1', 'ok.runner.test');
    await r.ready;
    const { job, body } = await submitted(spec(4));
    await running(job, 1);
    await call(`/runners/jobs/${job}/events`, { runner: 'dl-1', attempt: 1, from: 0, ids: [5] });
    await running(job, 2);
    const events = await readAll(body); // attempt 2 goes silent too (GPU_MAX_ATTEMPTS = 2)
    expect(events.map((e) => e.event ?? 'data')).toEqual(['data', 'error']);
    expect(events[1]?.data).toMatchObject({ code: 'gpu_job_failed' });
    const dead = await until(async () => {
      const list = ((await (await call('/runners/dead-letters')).json()) as { dead_letters: { job: string; reason: string }[] })
        .dead_letters;
      return list.find((d) => d.job === job);
    });
    expect(dead.reason).toMatch(/2 attempts failed.*runner_lost/);
    r.stop();
  });

  it('fails clearly when no runner can hold the model, and at once on a job a runner calls invalid', async () => {
    await lapse();
    const small = keepAlive('small-1', 'small.runner.test', 2, 10);
    await small.ready;
    const big = await submitted(spec(4, 5000));
    const e1 = await readAll(big.body);
    expect(e1).toEqual([{ event: 'error', data: expect.objectContaining({ code: 'model_too_large', status: 422 }) }]);
    expect((e1[0]?.data.message as string) ?? '').toMatch(/5000 bytes.*holds 10/);

    const bad1 = keepAlive('bad-1', 'bad.runner.test', 2);
    await bad1.ready;
    const bad = await submitted(spec(4, 5));
    expect(await readAll(bad.body)).toEqual([{ event: 'error', data: expect.objectContaining({ code: 'job_invalid' }) }]);
    small.stop();
    bad1.stop();
  });

  it('runs merge builds on runners that take them; the stream ends with the artifact', async () => {
    await lapse();
    const gen = keepAlive('gen-only', 'ok.runner.test', 2, 1e9, ['generate']);
    const mrg = keepAlive('merger', 'ok.runner.test', 1, 1e9, ['generate', 'merge']);
    await Promise.all([gen.ready, mrg.ready]);
    const recipe = 'c'.repeat(64);
    const r = (await rpc.submitMerge({ merge_job: recipe, recipe, params: { kind: 'merge' }, bytes: 100 }, 'tenant-a')) as SubmitResult;
    if (!r.ok) throw new Error(JSON.stringify(r));
    expect(r.job).toMatch(/^mrg-/);
    const a = await running(r.job, 1);
    expect(a.runner).toBe('merger');
    const artifact = { artifact: recipe, files: ['adapter_config.json', 'adapter_model.safetensors'] };
    const progress = { fraction: 0.4, stage: 'merging modules' };
    await call(`/runners/jobs/${r.job}/events`, { runner: 'merger', attempt: 1, from: 0, ids: [], progress });
    expect((await rpc.status(r.job, 'tenant-a'))?.progress).toEqual(progress);
    await call(`/runners/jobs/${r.job}/events`, {
      runner: 'merger',
      attempt: 1,
      from: 0,
      ids: [],
      done: { finish_reason: 'stop', prompt_tokens: 0, artifact },
    });
    expect(await readAll(r.body)).toEqual([
      { event: 'progress', data: progress },
      { data: expect.objectContaining({ done: true, artifact, attempts: 1 }) },
    ]);
    gen.stop();
    mrg.stop();
  });

  it('sends a malformed queue message to the dead-letter queue with its reason, once', async () => {
    await env.GPU_QUEUE.send({ v: 1, job: '../../etc/passwd', attempt: 0 });
    const dead = await until(async () => {
      const list = ((await (await call('/runners/dead-letters')).json()) as { dead_letters: { reason: string }[] }).dead_letters;
      return list.find((d) => d.reason.startsWith('malformed job message'));
    });
    expect(dead.reason).toMatch(/job:.*attempt:/);
    await sleep(300);
    const list = ((await (await call('/runners/dead-letters')).json()) as { dead_letters: { reason: string }[] }).dead_letters;
    expect(list.filter((d) => d.reason.startsWith('malformed')).length).toBe(1);
  });
});
