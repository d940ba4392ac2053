/**
 * The local stack for end-to-end tests and benchmarks: `scripts/start.mjs` on a free port and a
 * throwaway state directory (wrangler dev running router, merge, infer and the GPU gateway; the
 * demo data seeded through the API), and GPU-runner processes started here so a test holds their
 * PIDs (to kill one mid-stream).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const root = join(import.meta.dirname, '..', '..');

export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
  });
}

/** Waits for `marker` on a child's output (which is kept in `log`). */
function waitFor(child: ChildProcess, marker: string, ms: number, what: string, log: { text: string }): Promise<void> {
  return new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`${what} was not ready within ${ms / 1000} s:\n${log.text.slice(-4000)}`)), ms);
    const onData = (c: Buffer) => {
      log.text += c;
      if (log.text.includes(marker)) {
        clearTimeout(timer);
        ok();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (c: Buffer) => (log.text += c));
    child.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`${what} exited (${code}) before it was ready:\n${log.text.slice(-4000)}`));
    });
  });
}

async function stopGroup(child: ChildProcess, graceMs: number): Promise<void> {
  if (!child.pid || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {}
  await Promise.race([exited, new Promise((r) => setTimeout(r, graceMs))]);
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {}
}

/**
 * A GPU-runner process (gpu-runner/src/server/main.ts) in its own process group, listening on a
 * free local port; resolves once it prints that it is ready (with the URL it listens on).
 */
export async function spawnRunner(o: {
  gatewayUrl: string;
  token: string;
  id: string;
  cacheDir: string;
  env?: Record<string, string>;
}): Promise<{ child: ChildProcess; url: string; log: { text: string } }> {
  const child = spawn(join(root, 'node_modules', '.bin', 'tsx'), [join(root, 'gpu-runner', 'src', 'server', 'main.ts')], {
    cwd: root,
    env: {
      ...process.env,
      LORA_EDGE_GATEWAY_URL: o.gatewayUrl,
      LORA_EDGE_RUNNER_TOKEN: o.token,
      LORA_EDGE_RUNNER_ID: o.id,
      LORA_EDGE_RUNNER_HOST: '127.0.0.1',
      LORA_EDGE_RUNNER_PORT: '0',
      LORA_EDGE_CACHE_DIR: o.cacheDir,
      ...o.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const log = { text: '' };
  await waitFor(child, 'lora-edge runner ready:', 60_000, `runner ${o.id}`, log);
  const url = /lora-edge runner ready: (\S+)/.exec(log.text)?.[1] as string;
  return { child, url, log };
}

export interface Runner {
  id: string;
  child: ChildProcess;
  log: { text: string };
  /** SIGKILL: the runner dies without a word (no drain, no hand-back). */
  kill(): void;
  stop(): Promise<void>;
}

export interface LocalStack {
  url: string;
  state: string;
  apiKey: string;
  adminToken: string;
  runnerToken: string;
  bootMs: number;
  log: { text: string };
  runners: Runner[];
  startRunner(id: string, env?: Record<string, string>): Promise<Runner>;
  stop(): Promise<void>;
}

export async function startStack(opts: { runners?: number } = {}): Promise<LocalStack> {
  const t0 = Date.now();
  const state = mkdtempSync(join(tmpdir(), 'lora-edge-e2e-'));
  const port = await freePort();
  const log = { text: '' };
  // Its own process group: the stack (wrangler, workerd, its runners) is stopped as a whole at the end.
  const stack = spawn(
    process.execPath,
    [join(root, 'scripts', 'start.mjs'), '--port', String(port), '--persist-to', state, '--runners', String(opts.runners ?? 1)],
    { cwd: root, env: { ...process.env, CI: '1' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  await waitFor(stack, 'lora-edge ready:', 90_000, 'the stack', log);
  const secrets = Object.fromEntries(
    readFileSync(join(state, 'lora-edge.env'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  ) as Record<string, string>;
  const demo = JSON.parse(readFileSync(join(state, 'lora-edge-demo.json'), 'utf8')) as { api_key: string };
  const url = `http://127.0.0.1:${port}`;
  const runners: Runner[] = [];

  const startRunner = async (id: string, env: Record<string, string> = {}): Promise<Runner> => {
    const { child, log: rlog } = await spawnRunner({
      gatewayUrl: url,
      token: secrets.RUNNER_TOKEN as string,
      id,
      cacheDir: join(state, `cache-${id}`),
      env,
    });
    // Registered with the gateway: it shows in the pool.
    for (let i = 0; i < 200; i++) {
      const pool = (await (
        await fetch(`${url}/runners/pool`, { headers: { authorization: `Bearer ${secrets.RUNNER_TOKEN}` } })
      ).json()) as {
        runners: { id: string; live: boolean }[];
      };
      if (pool.runners.some((r) => r.id === id && r.live)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const r: Runner = {
      id,
      child,
      log: rlog,
      kill: () => {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      },
      stop: () => stopGroup(child, 10_000),
    };
    runners.push(r);
    return r;
  };

  return {
    url,
    state,
    apiKey: demo.api_key,
    adminToken: secrets.ADMIN_TOKEN as string,
    runnerToken: secrets.RUNNER_TOKEN as string,
    bootMs: Date.now() - t0,
    log,
    runners,
    startRunner,
    stop: async () => {
      await Promise.all(runners.map((r) => r.stop()));
      await stopGroup(stack, 8000);
      rmSync(state, { recursive: true, force: true });
    },
  };
}
