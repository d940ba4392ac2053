/**
 * The GPU path's cost, measured from outside as a client sees it: generations streamed with the
 * official `openai` client through the local stack (router → gateway: admission, job object,
 * queue, pool → one runner process on the cpu-native engine → the job object → the router's SSE)
 * against, in the same run, the same generations submitted to an Engine in this process (the
 * stories260k fixture on cpu-native, the runner's engine settings).
 *
 * 1, 8 and 32 concurrent streams, each on a different fixture adapter or weighted mix (32
 * choices from the four adapters the demo registers), a reference prompt, 64 tokens, greedy,
 * EOS ignored. One runner with 32 slots, so the engine can batch every stream. Per concurrency:
 * aggregate tokens/s, and p50/p99 of a whole stream (request start → last token) and of the time
 * to first token, each beside the engine alone. Queue path and engine alone alternate round by
 * round, after a warm-up round on both (model, adapters and LoRA stacks loaded). Every
 * queue-path stream's ids must equal the engine-alone ids of the same choice.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  Engine,
  loadAdapterDir,
  loadBackend,
  loadNativeAddon,
  loadRunnerModel,
  type MixEntry,
  modelSource,
  nf4Decoder,
  openModelDir,
} from '@lora-edge/gpu-runner';
import type { LoraAdapter } from '@lora-edge/shared';
import OpenAI from 'openai';
import { addAdapter, addStories, generateJob, TestGateway, TOKEN } from '../gpu-runner/src/server/testing.ts';
import { type LocalStack, root, spawnRunner, startStack } from '../test/e2e/local-stack.ts';
import { type BenchContext, median, type Row, type Suite } from './lib.ts';

const STORIES = join(root, 'fixtures', 'models', 'stories260k');
const ADAPTERS = join(root, 'fixtures', 'adapters');
/** The fixture adapters the demo seed registers for the demo tenant on stories260k. */
const QV = 'tiny-qv-r4';
const ALL = 'tiny-all-r8';
const RS = 'tiny-rslora-r8';
const DORA = 'tiny-dora-r4';
const SLOTS = 32;
const TOKENS = 64;
const LEVELS = [1, 8, 32];

type Choice = { id: string; weight: number }[];

/**
 * 32 distinct choices: each adapter alone at weight 1, then pairs and triples of the three LoRA
 * adapters at various weights (DoRA only alone at weight 1: its magnitude does not scale). No
 * two choices are the same mix up to order (the engine keys its stacks on the sorted mix), and
 * none is the seeded alias story-mix (qv 0.5, all 0.3, rslora 0.2).
 */
function choices(): Choice[] {
  const out: Choice[] = [QV, ALL, RS, DORA].map((id) => [{ id, weight: 1 }]);
  const pairWeights = [
    [0.5, 0.5],
    [0.5, 0.7],
    [0.7, 0.3],
    [0.3, 0.7],
    [1, 1],
    [0.9, 0.4],
  ];
  for (const [a, b] of [
    [QV, ALL],
    [QV, RS],
    [ALL, RS],
  ] as const)
    for (const [wa, wb] of pairWeights)
      out.push([
        { id: a, weight: wa as number },
        { id: b, weight: wb as number },
      ]);
  const tripleWeights = [
    [0.2, 0.5, 0.3],
    [0.3, 0.2, 0.5],
    [1, 0.5, 0.25],
    [0.4, 0.4, 0.4],
    [0.7, 0.2, 0.6],
    [0.3, 0.3, 0.9],
    [0.6, 0.8, 0.1],
    [0.25, 1, 0.5],
    [0.8, 0.6, 0.4],
    [0.1, 0.3, 1],
  ];
  for (const [wq, wa, wr] of tripleWeights)
    out.push([
      { id: QV, weight: wq as number },
      { id: ALL, weight: wa as number },
      { id: RS, weight: wr as number },
    ]);
  return out;
}

const label = (c: Choice) => c.map((e) => (c.length === 1 && e.weight === 1 ? e.id : `${e.id}×${e.weight}`)).join(' + ');

/** One stream's figures: ms from its request's start to its first and its last token, and its ids. */
interface Stream {
  ids: number[];
  ttftMs: number;
  totalMs: number;
  /** performance.now() at its request's start. */
  startedAt: number;
  job?: string;
}

interface Round {
  streams: Stream[];
  /** Tokens of all streams / (last stream's last token − first request's start). */
  tokPerSec: number;
}

/** A round: `c` streams started together, stream i on plan[i]; the round's tokens/s. Throws the first failure once all have ended. */
async function round(plan: { choice: number; prompt: number[] }[], one: (choice: number, prompt: number[]) => Promise<Stream>) {
  const t0 = performance.now();
  const settled = await Promise.allSettled(plan.map((p) => one(p.choice, p.prompt)));
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
  const streams = settled.map((r) => (r as PromiseFulfilledResult<Stream>).value);
  const end = Math.max(...streams.map((s) => s.startedAt + s.totalMs));
  const tokens = streams.reduce((n, s) => n + s.ids.length, 0);
  return { streams, tokPerSec: tokens / ((end - t0) / 1000) } satisfies Round;
}

/**
 * `wrangler dev` reloads the Workers when their sources change (others may be editing the tree
 * while this runs): a request in flight then fails with 503 "worker restarted mid-request". Such
 * a round is run again, at most 3 times; anything else fails the suite.
 */
async function retryingRestarts<T>(what: () => Promise<T>, restarts: { n: number }): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await what();
    } catch (e) {
      if (i >= 3 || !(e instanceof OpenAI.APIError && e.status === 503 && /restarted/i.test(e.message))) throw e;
      restarts.n++;
      await new Promise((r) => setTimeout(r, 3000));
    }
  }
}

/** Nearest-rank percentile. */
function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

type Extra = { ignore_eos: boolean; return_token_ids: boolean; adapters: Choice };

/**
 * The runner service without the Workers: a runner process (the same as the stack's) fed jobs
 * over its HTTP API by the runner tests' gateway stand-in in this process, which applies the
 * gateway's job rules to the event batches. Splits the queue path's cost into the runner
 * service's (HTTP jobs, batched events) and the Workers' (router, gateway, queue, job objects).
 */
async function runnerAlone(all: Choice[]) {
  const gw = await new TestGateway().start();
  const model = await addStories(gw);
  const digests = new Map<string, string>();
  for (const n of [QV, ALL, RS, DORA]) digests.set(n, await addAdapter(gw, n, 'bench', n));
  const first = new Map<string, number>();
  const last = new Map<string, number>();
  gw.eventsHook = (job, ev) => {
    if (ev.ids.length) {
      if (!first.has(job.id)) first.set(job.id, performance.now());
      last.set(job.id, performance.now());
    }
    return undefined;
  };
  const { child, url } = await spawnRunner({
    gatewayUrl: gw.url,
    token: TOKEN,
    id: 'bench-runner-alone',
    cacheDir: join(root, 'node_modules', '.cache', 'lora-edge-bench-runner'),
    env: { LORA_EDGE_SLOTS: String(SLOTS), LORA_EDGE_BACKEND: 'cpu-native' },
  });
  let n = 0;
  const one = async (choice: number, prompt: number[]): Promise<Stream> => {
    const id = `bench-alone-${n++}`;
    gw.newJob(id, TOKENS, 1, [], 'bench-runner-alone');
    const spec = {
      adapters: (all[choice] as Choice).map((e) => ({
        tenant: 'bench',
        name: e.id,
        digest: digests.get(e.id) as string,
        weight: e.weight,
      })),
      ignore_eos: true,
    };
    const t0 = performance.now();
    const r = await gw.dispatch(url, generateJob(id, model.digest, prompt, TOKENS, spec));
    if (r.status !== 202) throw new Error(`the runner refused a job: ${JSON.stringify(r.body)}`);
    await gw.until(() => gw.jobs.get(id)?.status !== 'running', 120_000, `job ${id}`);
    const job = gw.jobs.get(id);
    if (job?.status !== 'done') throw new Error(`job ${id} ended ${job?.status}: ${JSON.stringify(job?.error)}`);
    return { ids: job.ids, ttftMs: (first.get(id) ?? t0) - t0, totalMs: (last.get(id) ?? t0) - t0, startedAt: t0 };
  };
  return {
    one,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      await gw.close();
    },
  };
}

export const suite: Suite = {
  title: 'GPU path: queue path (router → gateway → runner) vs the engine alone, 1/8/32 streams on different adapters and mixes',
  async run(ctx: BenchContext): Promise<Row[]> {
    if (!loadNativeAddon().addon) {
      console.log(`(skipped: ${loadNativeAddon().error?.message})`);
      return [];
    }
    const reference = JSON.parse(readFileSync(join(STORIES, 'reference.json'), 'utf8')) as { cases: { prompt_ids: number[] }[] };
    const prompts = reference.cases.map((c) => c.prompt_ids);
    const all = choices();
    if (new Set(all.map(label)).size < 32) throw new Error('the bench needs 32 distinct adapter choices');
    const promptOf = (choice: number) => prompts[choice % prompts.length] as number[];
    // The stream plan of round r at concurrency c: stream i on choice (r·c + i) mod 32, so rounds
    // of few streams walk through the choices; both sides run the same plan in the same round.
    const planOf = (c: number, r: number) =>
      Array.from({ length: c }, (_, i) => {
        const choice = (r * c + i) % all.length;
        return { choice, prompt: promptOf(choice) };
      });
    // At least a few rounds per level, and for few streams enough rounds for 32 streams per side.
    const roundsOf = (c: number) => (ctx.quick ? Math.max(2, Math.ceil(8 / c)) : Math.max(5, Math.ceil(32 / c)));

    // The engine alone: the stories260k fixture on cpu-native, the runner's engine settings
    // (maxBatch = slots, default KV and adapter budgets), the adapters parsed from their folders.
    const dir = openModelDir(STORIES);
    const source = modelSource(dir);
    const backend = loadBackend('cpu-native');
    const engine = new Engine(backend, loadRunnerModel(backend, source, { decoders: [nf4Decoder] }), source, { maxBatch: SLOTS });
    const parsed = new Map<string, LoraAdapter>([QV, ALL, RS, DORA].map((n) => [n, loadAdapterDir(join(ADAPTERS, n))]));
    const mixOf = (c: Choice): MixEntry[] => c.map((e) => ({ id: e.id, adapter: parsed.get(e.id) as LoraAdapter, weight: e.weight }));
    const alone = async (choice: number, prompt: number[]): Promise<Stream> => {
      const t0 = performance.now();
      const h = engine.submit({ prompt, maxTokens: TOKENS, mix: mixOf(all[choice] as Choice), ignoreEos: true });
      const ids: number[] = [];
      let first = 0;
      let last = 0;
      for await (const t of h.tokens) {
        last = performance.now() - t0;
        if (ids.length === 0) first = last;
        ids.push(t.token);
      }
      await h.result;
      return { ids, ttftMs: first, totalMs: last, startedAt: t0 };
    };

    let stack: LocalStack | undefined;
    let service: Awaited<ReturnType<typeof runnerAlone>> | undefined;
    const rows: Row[] = [];
    try {
      service = await runnerAlone(all);
      stack = await startStack({ runners: 0 });
      const url = stack.url;
      const pinned = await fetch(`${url}/admin/models/stories260k`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${stack.adminToken}` },
        body: JSON.stringify({ placement: 'gpu' }),
      });
      if (!pinned.ok) throw new Error(`pinning stories260k to the GPU path: ${pinned.status} ${await pinned.text()}`);
      await stack.startRunner('bench-runner', { LORA_EDGE_SLOTS: String(SLOTS), LORA_EDGE_BACKEND: 'cpu-native' });
      const client = new OpenAI({ apiKey: stack.apiKey, baseURL: `${url}/v1`, maxRetries: 0, timeout: 120_000 });
      const served = new Set<string>();
      const queued = async (choice: number, prompt: number[]): Promise<Stream> => {
        const t0 = performance.now();
        const extra: Extra = { ignore_eos: true, return_token_ids: true, adapters: all[choice] as Choice };
        const { data, response } = await client.completions
          .create({
            model: 'stories260k',
            prompt,
            max_tokens: TOKENS,
            temperature: 0,
            stream: true,
            ...extra,
          } as OpenAI.CompletionCreateParamsStreaming)
          .withResponse();
        const job = response.headers.get('x-lora-edge-job') ?? undefined;
        const ids: number[] = [];
        let first = 0;
        let last = 0;
        for await (const chunk of data) {
          const by = (chunk as unknown as { lora_edge?: { target: string; mode: string } }).lora_edge;
          if (by) served.add(`${by.target}/${by.mode}`);
          const got = (chunk.choices[0] as { token_ids?: number[] } | undefined)?.token_ids;
          if (!got?.length) continue;
          last = performance.now() - t0;
          if (ids.length === 0) first = last;
          ids.push(...got);
        }
        return { ids, ttftMs: first, totalMs: last, startedAt: t0, ...(job ? { job } : {}) };
      };
      // A finished job's phases as the gateway recorded them: queued → a runner took it → the
      // first token reached the gateway.
      const phases = async (job: string): Promise<{ wait: number; first: number } | undefined> => {
        const res = await fetch(`${url}/v1/generations/${job}`, { headers: { authorization: `Bearer ${stack?.apiKey}` } });
        if (!res.ok) return undefined;
        const st = (await res.json()) as { first_token_at: string | null; attempts: { queued_at: string; started_at: string | null }[] };
        const a = st.attempts[0];
        if (!a?.started_at || !st.first_token_at) return undefined;
        return { wait: Date.parse(a.started_at) - Date.parse(a.queued_at), first: Date.parse(st.first_token_at) - Date.parse(a.queued_at) };
      };
      const check = (plan: { choice: number }[], q: Stream[], e: Stream[]) => {
        for (const [i, p] of plan.entries()) {
          const want = e[i]?.ids ?? [];
          const got = q[i]?.ids ?? [];
          if (want.length !== TOKENS || got.length !== want.length || got.some((t, k) => t !== want[k]))
            throw new Error(
              `queue path ids differ from the engine alone for ${label(all[p.choice] as Choice)} (${got.length} vs ${want.length} tokens): ${got.join(',')} vs ${want.join(',')}`,
            );
        }
      };

      // Warm-up: every choice once on each side (the runner loads the model and adapters, both
      // sides build the 32 LoRA stacks), checked like the measured rounds.
      const warm = planOf(all.length, 0);
      const restarts = { n: 0 };
      await retryingRestarts(async () => {
        const wq = await round(warm, queued);
        const we = await round(warm, alone);
        check(warm, wq.streams, we.streams);
      }, restarts);
      const viaRunner = (service as NonNullable<typeof service>).one;
      check(warm, (await round(warm, viaRunner)).streams, (await round(warm, alone)).streams);

      for (const c of LEVELS) {
        const q: Round[] = [];
        const e: Round[] = [];
        const s: Round[] = [];
        const rounds = roundsOf(c);
        for (let r = 0; r < rounds; r++) {
          const plan = planOf(c, r);
          // Alternate which side goes first, so drift on a shared machine hits both.
          const [qr, er] = await retryingRestarts(async () => {
            if (r % 2 === 0) {
              const qr = await round(plan, queued);
              return [qr, await round(plan, alone)] as const;
            }
            const er = await round(plan, alone);
            return [await round(plan, queued), er] as const;
          }, restarts);
          check(plan, qr.streams, er.streams);
          const sr = await round(plan, viaRunner);
          check(plan, sr.streams, er.streams);
          q.push(qr);
          e.push(er);
          s.push(sr);
        }
        const qs = q.flatMap((x) => x.streams);
        const es = e.flatMap((x) => x.streams);
        const ph = (await Promise.all(qs.map((s) => (s.job ? phases(s.job) : undefined)))).filter((p) => p !== undefined);
        const waits = ph.map((p) => p.wait);
        const firsts = ph.map((p) => p.first);
        const what = `${c} stream${c > 1 ? 's' : ''} × ${c} adapter${c > 1 ? 's/mixes' : ''}`;
        const samples = `${rounds} rounds, ${qs.length} streams per side`;
        const base = (value: number) => ({ value, label: 'engine alone, same run' });
        const stat = (xs: Stream[], f: (s: Stream) => number, p: number) => percentile(xs.map(f), p);
        const total = (s: Stream) => s.totalMs;
        const ttft = (s: Stream) => s.ttftMs;
        rows.push(
          {
            name: `${what}: aggregate throughput`,
            value: median(q.map((x) => x.tokPerSec)),
            unit: 'tok/s',
            baseline: base(median(e.map((x) => x.tokPerSec))),
            note: `median of ${rounds} rounds; ${TOKENS} tokens per stream, greedy, EOS ignored${restarts.n ? `; ${restarts.n} round(s) rerun after a wrangler dev reload so far` : ''}`,
          },
          {
            name: `${what}: runner service alone, aggregate throughput`,
            value: median(s.map((x) => x.tokPerSec)),
            unit: 'tok/s',
            baseline: base(median(e.map((x) => x.tokPerSec))),
            note: `the runner process fed over its HTTP API, events to a gateway stand-in (no Workers); whole stream p50 ${stat(
              s.flatMap((x) => x.streams),
              total,
              50,
            ).toFixed(0)} ms`,
          },
          {
            name: `${what}: whole stream, p50`,
            value: stat(qs, total, 50),
            unit: 'ms',
            baseline: base(stat(es, total, 50)),
            note: `request start → last token; ${samples}`,
          },
          {
            name: `${what}: whole stream, p99`,
            value: stat(qs, total, 99),
            unit: 'ms',
            baseline: base(stat(es, total, 99)),
            note: `nearest rank of ${qs.length} streams${qs.length <= 100 ? ' (= the slowest)' : ''}`,
          },
          {
            name: `${what}: time to first token, p50`,
            value: stat(qs, ttft, 50),
            unit: 'ms',
            baseline: base(stat(es, ttft, 50)),
            note: waits.length
              ? `at the gateway: queued → a runner took the job p50 ${median(waits).toFixed(0)} ms (max ${Math.max(...waits).toFixed(0)}), → first token p50 ${median(firsts).toFixed(0)} ms`
              : '',
          },
          {
            name: `${what}: time to first token, p99`,
            value: stat(qs, ttft, 99),
            unit: 'ms',
            baseline: base(stat(es, ttft, 99)),
            note: samples,
          },
        );
      }
      const loraEdge = [...served].join(', ');
      if (loraEdge !== 'gpu/unmerged') throw new Error(`expected every stream served on the GPU path unmerged, got ${loraEdge}`);
    } catch (err) {
      // What the stack and the runner said last, to tell a stack fault from a bench fault.
      console.error(
        `(the stack's log ends)\n${stack?.log.text.slice(-4000)}\n(the runner's log ends)\n${stack?.runners[0]?.log.text.slice(-3000)}`,
      );
      throw err;
    } finally {
      await service?.stop();
      await stack?.stop();
      engine.stacks.clear();
      dir.close();
    }
    return rows;
  },
};
