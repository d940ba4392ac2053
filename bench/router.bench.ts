/**
 * The router's cost, measured from outside as a client sees it (autocannon over HTTP, one
 * connection, so latency is not queueing): the local stack (`scripts/start.mjs`: router, merge
 * and infer in one workerd, seeded) against, on the same persisted state, the infer Worker alone
 * under `wrangler dev` (its own HTTP API, POST /v1/generate, the same request).
 *
 * - the router's bare Hono route (GET /health) is the floor of any request through workerd;
 * - a one-token completion through the router vs the same generation from infer alone: the
 *   difference is what the router adds (auth, validation, adapter selection, plan: KV and R2
 *   reads, the RPC hop, the response), p50 and p99; for the base model, and for the demo alias
 *   (a weighted three-adapter mix) once it is hot and merged (infer alone gets the fused model);
 * - end-to-end tokens/s of a long greedy completion through the router (JSON and streamed) vs
 *   infer alone.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { freePort } from '../test/e2e/local-stack.ts';
import { type BenchContext, median, type Row, type Suite } from './lib.ts';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..');

/** Starts a process in its own group and waits for `ready` in its output. */
async function start(cmd: string, args: string[], ready: RegExp, env: NodeJS.ProcessEnv = {}): Promise<ChildProcess> {
  const p = spawn(cmd, args, {
    cwd: root,
    env: { ...process.env, CI: '1', WRANGLER_SEND_METRICS: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let log = '';
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`not ready in 90 s:\n${log.slice(-3000)}`)), 90_000);
    const on = (c: Buffer) => {
      log += c;
      if (ready.test(log)) {
        clearTimeout(timer);
        ok();
      }
    };
    p.stdout?.on('data', on);
    p.stderr?.on('data', on);
    p.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`exited (${code}) before it was ready:\n${log.slice(-3000)}`));
    });
  });
  return p;
}

async function stop(p: ChildProcess): Promise<void> {
  if (!p.pid || p.exitCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  process.kill(-p.pid, 'SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, 8000))]);
  try {
    process.kill(-p.pid, 'SIGKILL');
  } catch {}
}

interface Latency {
  p50: number;
  p99: number;
  requests: number;
}

async function latency(url: string, body: unknown | undefined, headers: Record<string, string>, seconds: number): Promise<Latency> {
  const r = await autocannon({
    url,
    connections: 1,
    duration: seconds,
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (r.non2xx > 0 || r.errors > 0) throw new Error(`${url}: ${r.non2xx} non-2xx answers, ${r.errors} errors`);
  return { p50: r.latency.p50, p99: r.latency.p99, requests: r.requests.total };
}

/** Median tokens/s over `reps` runs of `run` (which returns the tokens it generated). */
async function tokensPerSecond(run: () => Promise<number>, reps: number): Promise<number> {
  await run();
  const rates: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    const n = await run();
    rates.push(n / ((performance.now() - t0) / 1000));
  }
  return median(rates);
}

async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${url}: ${res.status} ${text}`);
  return JSON.parse(text) as Record<string, unknown>;
}

async function streamTokens(url: string, body: unknown, headers: Record<string, string>): Promise<number> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  let n = 0;
  for (const block of text.split('\n\n')) {
    if (!block.startsWith('data: {')) continue;
    const chunk = JSON.parse(block.slice(6)) as { choices?: { token_ids?: number[] }[] };
    for (const c of chunk.choices ?? []) n += c.token_ids?.length ?? 0;
  }
  return n;
}

/** Tokens of infer's own SSE stream (`data: {"index","ids"}` per token). */
async function inferStreamTokens(url: string, body: unknown): Promise<number> {
  const text = await (
    await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  ).text();
  return text.split('\n\n').filter((b) => b.startsWith('data: {"index"')).length;
}

/** The fused model's digest as the router computes it (plan.ts `listedFilesDigest`): what infer alone is asked for. */
function listedFilesDigest(files: { name: string; sha256: string }[]): string {
  const wanted = files.filter((f) => f.name === 'config.json' || f.name === 'model.safetensors').sort((a, b) => (a.name < b.name ? -1 : 1));
  const lines = ['lora-edge-files-v1', ...wanted.map((f) => `${f.name} ${f.sha256}`)];
  return createHash('sha256')
    .update(`${lines.join('\n')}\n`)
    .digest('hex');
}

export const suite: Suite = {
  title: 'router: added latency and end-to-end tokens/s (local stack, wrangler dev)',
  async run(ctx: BenchContext): Promise<Row[]> {
    const seconds = ctx.quick ? 3 : 8;
    const reps = ctx.quick ? 3 : 5;
    const longTokens = ctx.quick ? 128 : 256;
    const state = mkdtempSync(join(tmpdir(), 'lora-edge-bench-'));
    const rows: Row[] = [];
    try {
      // Phase 1: the whole stack.
      const port = await freePort();
      const stack = await start(
        process.execPath,
        [join(root, 'scripts', 'start.mjs'), '--port', String(port), '--persist-to', state],
        /lora-edge ready:/,
      );
      const base = `http://127.0.0.1:${port}`;
      const key = (JSON.parse(readFileSync(join(state, 'lora-edge-demo.json'), 'utf8')) as { api_key: string }).api_key;
      const auth = { authorization: `Bearer ${key}` };
      const models = (await (await fetch(`${base}/v1/models`, { headers: auth })).json()) as {
        data: { id: string; lora_edge: { digest?: string } }[];
      };
      const stories = models.data.find((m) => m.id === 'stories260k')?.lora_edge.digest as string;
      const baseReq = { model: 'stories260k', adapters: [], prompt: [1], max_tokens: 1, temperature: 0, ignore_eos: true };
      // The demo alias: three adapters, weighted. Warmed until the merge service has fused it, so
      // the numbers are the steady state (a hot mix), not the one-off merge and model load.
      const mixReq = { model: 'story-mix', prompt: [1], max_tokens: 1, temperature: 0, ignore_eos: true };
      let bare: Latency;
      let routedBase: Latency;
      let routedMix: Latency;
      let routerRate: number;
      let routerStreamRate: number;
      let fused = '';
      try {
        for (let i = 0; i < 3; i++) await postJson(`${base}/v1/completions`, baseReq, auth);
        let recipe = '';
        for (let i = 0; i < 80; i++) {
          const r = (await postJson(`${base}/v1/completions`, mixReq, auth)) as { lora_edge: { mode: string; recipe: string } };
          recipe = r.lora_edge.recipe;
          if (r.lora_edge.mode === 'merged') break;
          if (i >= 2) await new Promise((ok) => setTimeout(ok, 250));
        }
        const manifest = (await (await fetch(`${base}/v1/artifacts/${recipe}`, { headers: auth })).json()) as {
          files: { name: string; sha256: string }[];
        };
        fused = listedFilesDigest(manifest.files);
        bare = await latency(`${base}/health`, undefined, {}, seconds);
        routedBase = await latency(`${base}/v1/completions`, baseReq, auth, seconds);
        routedMix = await latency(`${base}/v1/completions`, mixReq, auth, seconds);
        const long = { ...mixReq, max_tokens: longTokens };
        routerRate = await tokensPerSecond(async () => {
          const r = (await postJson(`${base}/v1/completions`, long, auth)) as { usage: { completion_tokens: number } };
          return r.usage.completion_tokens;
        }, reps);
        routerStreamRate = await tokensPerSecond(
          () => streamTokens(`${base}/v1/completions`, { ...long, stream: true, return_token_ids: true }, auth),
          reps,
        );
      } finally {
        await stop(stack);
      }

      // Phase 2: infer alone, on the same state (the same R2 objects), the same generations.
      const inferPort = await freePort();
      const infer = await start(
        join(root, 'node_modules', '.bin', 'wrangler'),
        [
          'dev',
          '-c',
          'services/infer/wrangler.jsonc',
          '--port',
          String(inferPort),
          '--ip',
          '127.0.0.1',
          '--inspector-port',
          String(await freePort()),
          '--persist-to',
          state,
          '--show-interactive-dev-session=false',
        ],
        /Ready on/,
      );
      const gen = `http://127.0.0.1:${inferPort}/v1/generate`;
      const engine = (digest: string, maxTokens: number) => ({
        model: { digest },
        prompt_ids: [1],
        max_tokens: maxTokens,
        temperature: 0,
        ignore_eos: true,
      });
      let aloneBase: Latency;
      let aloneMix: Latency;
      let aloneRate: number;
      let aloneStreamRate: number;
      try {
        for (const d of [stories, fused]) for (let i = 0; i < 3; i++) await postJson(gen, engine(d, 1));
        aloneBase = await latency(gen, engine(stories, 1), {}, seconds);
        aloneMix = await latency(gen, engine(fused, 1), {}, seconds);
        aloneRate = await tokensPerSecond(
          async () => ((await postJson(gen, engine(fused, longTokens))) as { ids: number[] }).ids.length,
          reps,
        );
        aloneStreamRate = await tokensPerSecond(() => inferStreamTokens(gen, { ...engine(fused, longTokens), stream: true }), reps);
      } finally {
        await stop(infer);
      }

      const note = `stories260k, ${seconds} s, 1 connection`;
      const alone = { label: 'infer alone' };
      rows.push({
        name: 'GET /health, bare Hono route, p50',
        value: bare.p50,
        unit: 'ms',
        note: `${bare.requests} requests; p99 ${bare.p99} ms`,
      });
      rows.push({
        name: '1-token completion, base, p50',
        value: routedBase.p50,
        unit: 'ms',
        baseline: { value: aloneBase.p50, ...alone },
        note,
      });
      rows.push({
        name: '1-token completion, base, p99',
        value: routedBase.p99,
        unit: 'ms',
        baseline: { value: aloneBase.p99, ...alone },
        note,
      });
      rows.push({
        name: '1-token completion, alias story-mix (merged), p50',
        value: routedMix.p50,
        unit: 'ms',
        baseline: { value: aloneMix.p50, ...alone },
        note,
      });
      rows.push({
        name: '1-token completion, alias story-mix (merged), p99',
        value: routedMix.p99,
        unit: 'ms',
        baseline: { value: aloneMix.p99, ...alone },
        note,
      });
      rows.push({
        name: 'router added latency, base, p50 / p99',
        value: routedBase.p50 - aloneBase.p50,
        unit: 'ms',
        note: `p99: ${routedBase.p99 - aloneBase.p99} ms`,
      });
      rows.push({
        name: 'router added latency, mix, p50 / p99',
        value: routedMix.p50 - aloneMix.p50,
        unit: 'ms',
        note: `p99: ${routedMix.p99 - aloneMix.p99} ms`,
      });
      rows.push({
        name: `${longTokens}-token completion, story-mix, JSON`,
        value: routerRate,
        unit: 'tok/s',
        baseline: { value: aloneRate, ...alone },
      });
      rows.push({
        name: `${longTokens}-token completion, story-mix, streamed`,
        value: routerStreamRate,
        unit: 'tok/s',
        baseline: { value: aloneStreamRate, label: 'infer alone, SSE' },
        note: 'SSE, one OpenAI chunk per token',
      });
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
    return rows;
  },
};
