/**
 * The GPU path end to end on the local stack: router → gateway (queue, job object, pool) → two
 * runner processes on the CPU engine → back to the official `openai` client as SSE. stories260k
 * is pinned to the GPU path for these tests (PATCH /admin/models, placement gpu). The runners
 * pace their decode steps (LORA_EDGE_MIN_STEP_MS) so a stream lasts long enough to kill its runner
 * in the middle.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readSafetensors, toFloat32 } from '@lora-edge/shared';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalStack, type Runner, root, startStack } from './local-stack.ts';

const fixture = (...p: string[]) => JSON.parse(readFileSync(join(root, 'fixtures', ...p), 'utf8'));
const stories = fixture('models', 'stories260k', 'reference.json') as { cases: { prompt_ids: number[]; greedy_ids: number[] }[] };
const mix = fixture('adapters', 'mixes', 'reference.json') as {
  adapters: string[];
  weights: number[];
  prompt_ids: number[];
  n_generated: number;
  greedy_ids_unmerged: number[];
};
const qv = fixture('adapters', 'tiny-qv-r4', 'reference.json') as { generations: { prompt_ids: number[]; greedy_ids_merged: number[] }[] };

const RUNNER_ENV = { LORA_EDGE_SLOTS: '2', LORA_EDGE_MIN_STEP_MS: '25' };
type Extra = { ignore_eos?: boolean; return_token_ids?: boolean; adapters?: { id: string; weight: number }[] };
type WithIds = { token_ids?: number[] };

interface JobStatus {
  status: string;
  tokens: number;
  attempts: { n: number; runner: string | null; state: string; resumed_at_token: number; error?: { code: string } }[];
}

let stack: LocalStack;
let client: OpenAI;
const runners = new Map<string, Runner>();

const admin = (path: string, init: RequestInit) =>
  fetch(`${stack.url}${path}`, { ...init, headers: { ...(init.headers as object), authorization: `Bearer ${stack.adminToken}` } });
const asRunner = (path: string) => fetch(`${stack.url}${path}`, { headers: { authorization: `Bearer ${stack.runnerToken}` } });
const jobStatus = async (id: string) =>
  (await (await fetch(`${stack.url}/v1/generations/${id}`, { headers: { authorization: `Bearer ${stack.apiKey}` } })).json()) as JobStatus;

beforeAll(async () => {
  stack = await startStack({ runners: 0 });
  const pinned = await admin('/admin/models/stories260k', {
    method: 'PATCH',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ placement: 'gpu' }),
  });
  expect(pinned.status).toBe(200);
  for (const id of ['e2e-runner-a', 'e2e-runner-b']) runners.set(id, await stack.startRunner(id, RUNNER_ENV));
  client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${stack.url}/v1`, maxRetries: 0, timeout: 60_000 });
}, 150_000);

afterAll(async () => {
  await stack?.stop();
});

/** Streams one greedy completion; returns the ids in arrival order, the job id and the served-by facts. */
async function streamIds(prompt: number[], n: number, extra: Extra = {}, onIds?: (sofar: number[], job: string) => Promise<void> | void) {
  const { data, response } = await client.completions
    .create({
      model: 'stories260k',
      prompt,
      max_tokens: n,
      temperature: 0,
      ignore_eos: true,
      return_token_ids: true,
      stream: true,
      ...extra,
    } as OpenAI.CompletionCreateParamsStreaming)
    .withResponse();
  const job = response.headers.get('x-lora-edge-job') as string;
  const ids: number[] = [];
  let target: string | undefined;
  for await (const chunk of data) {
    target ??= (chunk as unknown as { lora_edge?: { target: string } }).lora_edge?.target;
    const c = chunk.choices[0] as (OpenAI.CompletionChoice & WithIds) | undefined;
    if (c?.token_ids?.length) {
      ids.push(...c.token_ids);
      await onIds?.(ids, job);
    }
  }
  return { ids, job, target };
}

describe('GPU path', () => {
  it('streams the stories260k reference ids through the queue and a runner', async () => {
    for (const c of stories.cases) {
      const r = await streamIds(c.prompt_ids, c.greedy_ids.length);
      expect(r.target).toBe('gpu');
      expect(r.job).toMatch(/^gen-/);
      expect(r.ids).toEqual(c.greedy_ids);
      expect(await jobStatus(r.job)).toMatchObject({ status: 'done', tokens: c.greedy_ids.length });
    }
  });

  it('runs adapters and weighted mixes unmerged on the runner (PEFT references)', async () => {
    const g = qv.generations[0] as { prompt_ids: number[]; greedy_ids_merged: number[] };
    expect((await streamIds(g.prompt_ids, g.greedy_ids_merged.length, { adapters: [{ id: 'tiny-qv-r4', weight: 1 }] })).ids).toEqual(
      g.greedy_ids_merged,
    );
    const adapters = mix.adapters.map((a, i) => ({ id: a, weight: mix.weights[i] as number }));
    expect((await streamIds(mix.prompt_ids, mix.n_generated, { adapters })).ids).toEqual(mix.greedy_ids_unmerged);
  });

  it('survives killing the runner mid-stream: every token exactly once, in order; the retry shows in the status', async () => {
    const c = stories.cases[1] as { prompt_ids: number[]; greedy_ids: number[] };
    let killed: string | undefined;
    const r = await streamIds(c.prompt_ids, c.greedy_ids.length, {}, async (sofar, job) => {
      if (killed || sofar.length < 5) return;
      const st = await jobStatus(job);
      const holder = st.attempts.at(-1)?.runner;
      if (!holder) return;
      killed = holder;
      runners.get(holder)?.kill();
    });
    expect(killed).toBeDefined();
    expect(r.ids).toEqual(c.greedy_ids);
    const st = await jobStatus(r.job);
    expect(st.status).toBe('done');
    expect(st.attempts.length).toBe(2);
    expect(st.attempts[0]).toMatchObject({ n: 1, runner: killed, state: 'failed', error: { code: 'runner_lost' } });
    expect(st.attempts[1]?.runner).not.toBe(killed);
    expect(st.attempts[1]?.state).toBe('done');
    expect(st.attempts[1]?.resumed_at_token).toBeGreaterThanOrEqual(5);
    // A fresh runner takes the dead one's place for what follows.
    runners.delete(killed as string);
    runners.set('e2e-runner-c', await stack.startRunner('e2e-runner-c', RUNNER_ENV));
  }, 60_000);

  it('drains a runner on SIGTERM: its unfinished stream is handed back and resumed elsewhere, exactly once', async () => {
    // A runner that gives in-flight jobs 300 ms to finish before handing them back. Its id sorts
    // first, so with equal load the gateway hands it the next job.
    const quick = await stack.startRunner('e2e-drain-0', { ...RUNNER_ENV, LORA_EDGE_DRAIN_MS: '300' });
    const c = stories.cases[2] as { prompt_ids: number[]; greedy_ids: number[] };
    let signalled = false;
    const r = await streamIds(c.prompt_ids, c.greedy_ids.length, {}, async (sofar) => {
      if (signalled || sofar.length < 5) return;
      signalled = true;
      if (quick.child.pid) process.kill(quick.child.pid, 'SIGTERM');
    });
    expect(r.ids).toEqual(c.greedy_ids);
    const st = await jobStatus(r.job);
    expect(st.status).toBe('done');
    expect(st.attempts.length).toBe(2);
    expect(st.attempts[0]).toMatchObject({ runner: quick.id, state: 'failed', error: { code: 'runner_draining' } });
    expect(st.attempts[1]).toMatchObject({ state: 'done' });
    expect(st.attempts[1]?.resumed_at_token).toBeGreaterThanOrEqual(5);
    await quick.stop();
  }, 60_000);

  it('builds a merge on a runner through the same queue; the artifact appears whole (PEFT merged weights)', async () => {
    const key = { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' };
    const res = await fetch(`${stack.url}/v1/merges`, {
      method: 'POST',
      headers: key,
      body: JSON.stringify({ base: 'stories260k', adapters: [{ id: 'tiny-qv-r4', weight: 1 }], output: 'fused', placement: 'gpu' }),
    });
    expect(res.status).toBe(202);
    const { job, recipe } = (await res.json()) as { job: { id: string }; recipe: string };
    let state = '';
    let result: Record<string, unknown> = {};
    for (let i = 0; i < 300 && state !== 'succeeded'; i++) {
      const j = (await (await fetch(`${stack.url}/v1/jobs/${job.id}`, { headers: key })).json()) as {
        job: { state: string; result?: Record<string, unknown>; error?: unknown };
      };
      state = j.job.state;
      result = j.job.result ?? {};
      expect(state, JSON.stringify(j.job.error)).not.toBe('failed');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(state).toBe('succeeded');
    expect(String(result.gpu_job)).toMatch(/^mrg-/);
    const weights = await fetch(`${stack.url}/v1/artifacts/${recipe}/model.safetensors`, { headers: key });
    expect(weights.status).toBe(200);
    const fused = readSafetensors(new Uint8Array(await weights.arrayBuffer()));
    const ref = fixture('adapters', 'tiny-qv-r4', 'reference.json') as { merged_modules: Record<string, { merged_weight: number[][] }> };
    for (const [module, m] of Object.entries(ref.merged_modules)) {
      const got = toFloat32(fused.tensor(`${module}.weight`));
      const want = m.merged_weight.flat();
      let num = 0;
      let den = 0;
      for (let i = 0; i < want.length; i++) {
        num += ((got[i] as number) - (want[i] as number)) ** 2;
        den += (want[i] as number) ** 2;
      }
      expect(Math.sqrt(num / den)).toBeLessThan(1e-6);
    }
  }, 60_000);

  it('answers a flood beyond capacity with 429 + Retry-After, and loses or duplicates no job', async () => {
    const N = 40;
    const c = stories.cases[0] as { prompt_ids: number[]; greedy_ids: number[] };
    const deadBefore = ((await (await asRunner('/runners/dead-letters')).json()) as { dead_letters: unknown[] }).dead_letters.length;
    const results = await Promise.all(
      Array.from({ length: N }, async () => {
        const res = await fetch(`${stack.url}/v1/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'stories260k',
            prompt: c.prompt_ids,
            max_tokens: c.greedy_ids.length,
            temperature: 0,
            ignore_eos: true,
            return_token_ids: true,
          }),
        });
        const body = (await res.json()) as { choices?: { token_ids: number[] }[]; error?: { code: string } };
        return { status: res.status, retryAfter: res.headers.get('retry-after'), job: res.headers.get('x-lora-edge-job'), body };
      }),
    );
    const ok = results.filter((r) => r.status === 200);
    const busy = results.filter((r) => r.status === 429);
    // Jobs in = jobs out: every request was either refused before enqueueing or served in full.
    expect(ok.length + busy.length).toBe(N);
    expect(busy.length).toBeGreaterThan(0);
    expect(ok.length).toBeGreaterThanOrEqual(4); // at least the live slots
    for (const b of busy) {
      expect(b.body.error?.code).toBe('gpu_busy');
      expect(Number(b.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(b.job).toBeNull();
    }
    const jobs = new Set(ok.map((r) => r.job));
    expect(jobs.size).toBe(ok.length);
    for (const r of ok) {
      expect(r.body.choices?.[0]?.token_ids).toEqual(c.greedy_ids);
      const st = await jobStatus(r.job as string);
      expect(st).toMatchObject({ status: 'done', tokens: c.greedy_ids.length });
    }
    const cap = (await (await asRunner('/runners/capacity')).json()) as { outstanding: number };
    expect(cap.outstanding).toBe(0);
    const deadAfter = ((await (await asRunner('/runners/dead-letters')).json()) as { dead_letters: unknown[] }).dead_letters.length;
    expect(deadAfter).toBe(deadBefore);
  }, 60_000);
});
