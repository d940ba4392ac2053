#!/usr/bin/env node
/**
 * `npm start`: the whole local stack in one command, on miniflare's persisted emulation: every
 * Worker under one `wrangler dev` (so service bindings, queues and Durable Objects connect
 * locally exactly as in production), then the demo data seeded through the public API
 * (idempotently: a restart finds it in place), then the URLs, the demo API key and a curl to try.
 *
 *   node scripts/start.mjs [--port 8787] [--persist-to .wrangler/state] [--no-seed] [--runners 1]
 *   (or PORT=…, LORA_EDGE_STATE=…, LORA_EDGE_RUNNERS=…)
 *
 * `--runners n` starts n GPU-runner processes (gpu-runner/src/server/main.ts, on the native CPU
 * kernels here, CUDA where there is a GPU) that register with the gateway Worker, so models
 * pinned to the GPU path are served locally exactly as in production.
 *
 * Local secrets live beside the state: <state>/lora-edge.env (ADMIN_TOKEN, made on first start,
 * given to every Worker) and <state>/lora-edge-demo.json (the demo API key).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function arg(name) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const port = Number(arg('--port') ?? process.env.PORT ?? 8787);
const state = resolve(root, arg('--persist-to') ?? process.env.LORA_EDGE_STATE ?? '.wrangler/state');
const seed = !process.argv.includes('--no-seed');
const runnerCount = Number(arg('--runners') ?? process.env.LORA_EDGE_RUNNERS ?? 1);
const url = `http://127.0.0.1:${port}`;

/** A port nobody listens on (for the inspector, so two stacks can run side by side). */
function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port: p } = s.address();
      s.close(() => ok(p));
    });
  });
}

/** Local secrets for this state directory (admin token, webhook secrets): made once, kept, so restarts keep working. */
const SECRET_NAMES = ['ADMIN_TOKEN', 'GENERIC_WEBHOOK_SECRET', 'HF_WEBHOOK_SECRET', 'RUNNER_TOKEN'];
function localSecrets() {
  mkdirSync(state, { recursive: true });
  const file = join(state, 'lora-edge.env');
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const values = {};
  for (const name of SECRET_NAMES)
    values[name] = new RegExp(`^${name}=(.*)$`, 'm').exec(text)?.[1] ?? `local-${randomBytes(18).toString('base64url')}`;
  writeFileSync(file, `${SECRET_NAMES.map((n) => `${n}=${values[n]}`).join('\n')}\n`, { mode: 0o600 });
  return { file, token: values.ADMIN_TOKEN, values };
}

async function waitReady(child, timeoutMs = 120_000) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited with code ${child.exitCode}`);
    try {
      // The router answers, and through it the merge Worker (401 without a key means it is there).
      const [health, merge] = await Promise.all([fetch(`${url}/health`), fetch(`${url}/v1/adapters`)]);
      if (health.ok && merge.status === 401) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`the stack did not answer on ${url} within ${timeoutMs / 1000} s`);
}

function runSeed(adminToken) {
  return new Promise((ok, fail) => {
    const tsx = join(root, 'node_modules', '.bin', 'tsx');
    const p = spawn(tsx, [join(root, 'scripts', 'seed.ts'), '--url', url, '--state', state], {
      cwd: root,
      env: { ...process.env, ADMIN_TOKEN: adminToken },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    p.stdout.on('data', (c) => {
      out += c;
    });
    p.on('error', fail);
    p.on('exit', (code) => (code === 0 ? ok(JSON.parse(out.trim().split('\n').at(-1))) : fail(new Error(`seeding failed (exit ${code})`))));
  });
}

function banner(demo) {
  const key = demo.api_key;
  console.log(`
lora-edge is up (state: ${state})
  router + OpenAI API  ${url}/v1        (OpenAPI: ${url}/openapi.json)
  merge service        ${url}/v1/adapters, /v1/merges, /admin/… (through the router)
  GPU path             ${runners.length} runner(s) on ${url}/runners/…; jobs at ${url}/v1/generations/<id>
  demo tenant          ${demo.tenant}
  demo API key         ${key}
  base models          ${demo.models.join(', ')}
  adapters             ${demo.adapters.join(', ')}
  aliases              ${demo.aliases.join(', ')}
  admin token          in ${join(state, 'lora-edge.env')}

Try:
  curl -s ${url}/v1/completions -H 'authorization: Bearer ${key}' -H 'content-type: application/json' \\
    -d '{"model": "stories260k-gpu", "prompt": [1], "max_tokens": 16, "temperature": 0, "stream": true}'   # the GPU path
  curl -s ${url}/v1/completions -H 'authorization: Bearer ${key}' -H 'content-type: application/json' \\
    -d '{"model": "story-mix", "prompt": [1], "max_tokens": 16, "temperature": 0, "return_token_ids": true}'
  curl -s ${url}/v1/chat/completions -H 'authorization: Bearer ${key}' -H 'content-type: application/json' \\
    -d '{"model": "tiny-random-chat", "messages": [{"role": "user", "content": "Tell me a story about a dragon"}], "max_tokens": 12}'
`);
  console.log(`lora-edge ready: ${url}`);
}

const secrets = localSecrets();
const workers = ['services/router', 'services/merge', 'services/infer', 'services/gpu'];
// The first config is the one served on the port; the others are reached through bindings.
const args = [
  'dev',
  ...workers.flatMap((w) => ['-c', join(w, 'wrangler.jsonc')]),
  '--port',
  String(port),
  '--ip',
  '127.0.0.1',
  '--inspector-port',
  String(await freePort()),
  '--persist-to',
  state,
];
if (process.env.CI || !process.stdout.isTTY) args.push('--show-interactive-dev-session=false');

console.log(`lora-edge local stack: ${workers.join(', ')}`);
// `wrangler dev -c a -c b` reads --env-file and .dev.vars for the first Worker only; the others get
// their local secrets from the process environment (CLOUDFLARE_INCLUDE_PROCESS_ENV). So wrangler
// runs with a small environment: the Workers see ADMIN_TOKEN, not the whole shell's variables.
const KEEP = [
  'PATH',
  'HOME',
  'TMPDIR',
  'TEMP',
  'LANG',
  'TERM',
  'CI',
  'NODE_OPTIONS',
  'XDG_CONFIG_HOME',
  'WRANGLER_LOG',
  'WRANGLER_LOG_PATH',
];
const env = Object.fromEntries(KEEP.filter((k) => process.env[k] !== undefined).map((k) => [k, process.env[k]]));
Object.assign(env, { WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_INCLUDE_PROCESS_ENV: 'true', ...secrets.values });
// Its own process group, so stopping the stack stops workerd too.
const child = spawn(join(root, 'node_modules', '.bin', 'wrangler'), args, {
  cwd: root,
  env,
  stdio: ['inherit', 'pipe', 'inherit'],
  detached: true,
});
child.stdout.pipe(process.stdout);

/** GPU runners (CPU engine here): each registers with the gateway through the router's /runners/*. */
const runners = [];
function startRunner(i) {
  const id = `local-runner-${i + 1}`;
  const tsx = join(root, 'node_modules', '.bin', 'tsx');
  const p = spawn(tsx, [join(root, 'gpu-runner', 'src', 'server', 'main.ts')], {
    cwd: root,
    env: {
      ...process.env,
      LORA_EDGE_GATEWAY_URL: url,
      LORA_EDGE_RUNNER_TOKEN: secrets.values.RUNNER_TOKEN,
      LORA_EDGE_RUNNER_ID: id,
      LORA_EDGE_RUNNER_HOST: '127.0.0.1',
      LORA_EDGE_RUNNER_PORT: '0',
      LORA_EDGE_CACHE_DIR: join(state, 'runner-cache'),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  p.stdout.on('data', (c) => {
    for (const line of String(c).split('\n')) if (line.trim()) console.log(`[${id}] ${line}`);
  });
  p.on('exit', (code, sig) => {
    if (stopping === undefined) console.error(`lora-edge: runner ${id} exited (${sig ?? code})`);
  });
  runners.push(p);
}

let stopping;
function stop(code) {
  if (stopping !== undefined) return;
  stopping = code;
  // Runners drain (finish or hand back their jobs) while the gateway is still up.
  for (const r of runners) r.kill('SIGTERM');
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {}
  // workerd normally goes with wrangler; if it lingers, the group is killed outright.
  setTimeout(() => {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {}
    process.exit(code);
  }, 5000).unref();
}
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => stop(0));
child.on('exit', (code) => {
  // Whatever wrangler left behind in its group (workerd) goes with it.
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {}
  process.exit(stopping ?? code ?? 0);
});

try {
  await waitReady(child);
  for (let i = 0; i < runnerCount; i++) startRunner(i);
  if (seed) banner(await runSeed(secrets.token));
  else console.log(`lora-edge ready: ${url}`);
} catch (e) {
  console.error(`lora-edge: ${e instanceof Error ? e.message : e}`);
  stop(1);
}
