#!/usr/bin/env node
/**
 * `wrangler dev` of services/infer, end to end: seed a throwaway local R2 with stories260k and
 * tiny-qv-r4 (`wrangler r2 object put --local`), start `wrangler dev` on it, and check that
 * POST /v1/generate reproduces the golden greedy ids (base and adapter, JSON and SSE).
 *   node services/infer/scripts/dev-smoke.mjs      (exit 0 = pass)
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const wrangler = join(root, 'node_modules', '.bin', 'wrangler');
const config = join(here, '..', 'wrangler.jsonc');
const state = mkdtempSync(join(tmpdir(), 'infer-dev-'));
const port = Number(process.env.PORT ?? 8799);
const env = { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: '1' };
const fixture = (...p) => join(root, 'fixtures', ...p);
const sha = (path) => createHash('sha256').update(readFileSync(path)).digest('hex');

function put(key, file) {
  const r = spawnSync(
    wrangler,
    ['r2', 'object', 'put', `lora-edge-dev/${key}`, '--file', file, '--local', '--persist-to', state, '-c', config],
    {
      cwd: root,
      env,
      encoding: 'utf8',
    },
  );
  if (r.status !== 0) throw new Error(`r2 put ${key}: ${r.stderr || r.stdout}`);
}

const model = sha(fixture('models', 'stories260k', 'model.safetensors'));
put(`models/${model}/config.json`, fixture('models', 'stories260k', 'config.json'));
put(`models/${model}/model.safetensors`, fixture('models', 'stories260k', 'model.safetensors'));
const adapter = { tenant: 't1', name: 'qv', digest: sha(fixture('adapters', 'tiny-qv-r4', 'adapter_model.safetensors')) };
for (const f of ['adapter_config.json', 'adapter_model.safetensors']) {
  put(`adapters/t1/qv/${adapter.digest}/${f}`, fixture('adapters', 'tiny-qv-r4', f));
}

const dev = spawn(wrangler, ['dev', '-c', config, '--port', String(port), '--persist-to', state, '--show-interactive-dev-session=false'], {
  cwd: root,
  env,
  stdio: ['ignore', 'pipe', 'pipe'],
});
let log = '';
dev.stdout.on('data', (c) => (log += c));
dev.stderr.on('data', (c) => (log += c));

async function ready() {
  for (let i = 0; i < 120; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`wrangler dev did not come up:\n${log}`);
}

const generate = (body) =>
  fetch(`http://127.0.0.1:${port}/v1/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

let failed = false;
function check(name, got, want) {
  const ok = JSON.stringify(got) === JSON.stringify(want);
  failed ||= !ok;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${ok ? '' : `\n  got  ${JSON.stringify(got)}\n  want ${JSON.stringify(want)}`}`);
}

try {
  await ready();
  const ref = JSON.parse(readFileSync(fixture('models', 'stories260k', 'reference.json'), 'utf8'));
  for (const [i, c] of ref.cases.entries()) {
    const r = await (
      await generate({ model: { digest: model }, prompt_ids: c.prompt_ids, max_tokens: c.greedy_ids.length, ignore_eos: true })
    ).json();
    check(`stories260k prompt ${i}`, r.ids, c.greedy_ids);
  }
  const aref = JSON.parse(readFileSync(fixture('adapters', 'tiny-qv-r4', 'reference.json'), 'utf8'));
  for (const mode of ['merged', 'unmerged']) {
    for (const g of aref.generations) {
      const body = {
        model: { digest: model },
        adapters: [{ ...adapter, weight: 1 }],
        mode,
        prompt_ids: g.prompt_ids,
        max_tokens: 32,
        ignore_eos: true,
      };
      check(`tiny-qv-r4 ${mode}`, (await (await generate(body)).json()).ids, g.greedy_ids_merged);
    }
  }
  const c0 = ref.cases[0];
  const sse = await (
    await generate({ model: { digest: model }, prompt_ids: c0.prompt_ids, max_tokens: 8, ignore_eos: true, stream: true })
  ).text();
  const ids = sse
    .split('\n\n')
    .filter((b) => b.startsWith('data: '))
    .map((b) => JSON.parse(b.slice(6)))
    .flatMap((d) => (d.done ? [] : (d.ids ?? [])));
  check('SSE stream', ids, c0.greedy_ids.slice(0, 8));
  const big = await generate({ model: { digest: 'f'.repeat(64) }, prompt_ids: [1] });
  check('unknown model is a 404', big.status, 404);
  console.log('stats', JSON.stringify(await (await fetch(`http://127.0.0.1:${port}/v1/stats`)).json()));
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  dev.kill('SIGTERM');
  rmSync(state, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
