/** Test helpers: the worker's own fetch, tenants, the stories260k base, fixture adapters, signed webhooks. */
import { exports } from 'cloudflare:workers';
import { expect } from 'vitest';
import allConfig from '../../../fixtures/adapters/tiny-all-r8/adapter_config.json?raw';
import allWeights from '../../../fixtures/adapters/tiny-all-r8/adapter_model.safetensors';
import doraConfig from '../../../fixtures/adapters/tiny-dora-r4/adapter_config.json?raw';
import doraWeights from '../../../fixtures/adapters/tiny-dora-r4/adapter_model.safetensors';
import loriConfig from '../../../fixtures/adapters/tiny-lori-r8/adapter_config.json?raw';
import loriWeights from '../../../fixtures/adapters/tiny-lori-r8/adapter_model.safetensors';
import qvConfig from '../../../fixtures/adapters/tiny-qv-r4/adapter_config.json?raw';
import qvWeights from '../../../fixtures/adapters/tiny-qv-r4/adapter_model.safetensors';
import rsloraConfig from '../../../fixtures/adapters/tiny-rslora-r8/adapter_config.json?raw';
import rsloraWeights from '../../../fixtures/adapters/tiny-rslora-r8/adapter_model.safetensors';
import storiesConfig from '../../../fixtures/models/stories260k/config.json?raw';
import storiesWeights from '../../../fixtures/models/stories260k/model.safetensors';
import type { JobView } from '../src/jobs/types.ts';
import { signWebhook } from '../src/lib.ts';

export const ADMIN = 'test-admin-token';
export const GENERIC_SECRET = 'test-generic-secret';
export const HF_SECRET = 'test-hf-secret';

export interface Fixture {
  config: string;
  weights: Uint8Array;
}

export const FIXTURES = {
  'tiny-qv-r4': { config: qvConfig, weights: new Uint8Array(qvWeights) },
  'tiny-all-r8': { config: allConfig, weights: new Uint8Array(allWeights) },
  'tiny-lori-r8': { config: loriConfig, weights: new Uint8Array(loriWeights) },
  'tiny-rslora-r8': { config: rsloraConfig, weights: new Uint8Array(rsloraWeights) },
  'tiny-dora-r4': { config: doraConfig, weights: new Uint8Array(doraWeights) },
} satisfies Record<string, Fixture>;
export type FixtureName = keyof typeof FIXTURES;

export const STORIES = { config: storiesConfig, weights: new Uint8Array(storiesWeights) };

export function call(path: string, init: RequestInit = {}): Promise<Response> {
  return exports.default.fetch(new Request(`https://merge.test${path}`, init));
}

export function auth(key: string, init: RequestInit = {}): RequestInit {
  return { ...init, headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${key}` } };
}

export function jsonInit(method: string, body: unknown, key?: string): RequestInit {
  const init = { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
  return key ? auth(key, init) : init;
}

let counter = 0;
/** A fresh tenant (unique per call, so tests never share state) and its API key. */
export async function newTenant(prefix = 't'): Promise<{ id: string; key: string }> {
  const id = `${prefix}-${Date.now().toString(36)}-${(counter++).toString(36)}`;
  const res = await call('/admin/tenants', jsonInit('POST', { id }, ADMIN));
  expect(res.status).toBe(201);
  const body = (await res.json()) as { api_key: { key: string } };
  return { id, key: body.api_key.key };
}

export function form(parts: Record<string, string | Uint8Array>): FormData {
  const f = new FormData();
  for (const [name, v] of Object.entries(parts)) {
    if (typeof v === 'string' && !name.endsWith('.json')) f.append(name, v);
    else f.append(name, new Blob([v]), name);
  }
  return f;
}

/** Registers stories260k as base `id` (idempotent). */
export async function registerStories(id = 'stories260k'): Promise<{ digest: string; size: number }> {
  const res = await call(
    `/admin/models/${id}`,
    auth(ADMIN, { method: 'PUT', body: form({ 'config.json': STORIES.config, 'model.safetensors': STORIES.weights }) }),
  );
  expect(res.status, await res.clone().text()).toBe(201);
  return ((await res.json()) as { model: { digest: string; size: number } }).model;
}

export async function upload(key: string, name: string, fixture: Fixture, fields: Record<string, string> = {}): Promise<Response> {
  return call(
    `/v1/adapters/${name}`,
    auth(key, {
      method: 'PUT',
      body: form({ 'adapter_config.json': fixture.config, 'adapter_model.safetensors': fixture.weights, ...fields }),
    }),
  );
}

export async function uploadOk(
  key: string,
  name: string,
  fixture: FixtureName,
  fields: Record<string, string> = {},
): Promise<{ id: string; digest: string }> {
  const res = await upload(key, name, FIXTURES[fixture], { base: 'stories260k', ...fields });
  expect(res.status, await res.clone().text()).toBe(201);
  return ((await res.json()) as { adapter: { id: string; digest: string } }).adapter;
}

export async function signedWebhook(body: string, opts: { ts?: number; secret?: string; signature?: string } = {}): Promise<RequestInit> {
  const ts = opts.ts ?? Math.floor(Date.now() / 1000);
  const signature = opts.signature ?? (await signWebhook(opts.secret ?? GENERIC_SECRET, ts, body));
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-loraedge-timestamp': String(ts), 'x-loraedge-signature': signature },
    body,
  };
}

/** Polls the job until it finishes (the queue consumer runs in this same runtime). */
export async function waitForJob(key: string, id: string, timeoutMs = 20_000): Promise<JobView> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const res = await call(`/v1/jobs/${id}`, auth(key));
    expect(res.status).toBe(200);
    const { job } = (await res.json()) as { job: JobView };
    if (job.state === 'succeeded' || job.state === 'failed') return job;
    if (Date.now() > until) throw new Error(`job ${id} still ${job.state} (${job.stage})`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function errorOf(res: Response): Promise<{ status: number; code: string; message: string }> {
  const body = (await res.json()) as { error: { code: string; message: string } };
  return { status: res.status, code: body.error.code, message: body.error.message };
}
