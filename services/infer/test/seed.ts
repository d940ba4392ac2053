/** Puts the golden fixtures into the test R2 bucket under content-addressed keys, as the merge service would. */
import { env } from 'cloudflare:workers';
import adaloraConfig from '../../../fixtures/adapters/tiny-adalora-r8/adapter_config.json?raw';
import adalora from '../../../fixtures/adapters/tiny-adalora-r8/adapter_model.safetensors';
import allConfig from '../../../fixtures/adapters/tiny-all-r8/adapter_config.json?raw';
import all from '../../../fixtures/adapters/tiny-all-r8/adapter_model.safetensors';
import doraConfig from '../../../fixtures/adapters/tiny-dora-r4/adapter_config.json?raw';
import dora from '../../../fixtures/adapters/tiny-dora-r4/adapter_model.safetensors';
import loriConfig from '../../../fixtures/adapters/tiny-lori-r8/adapter_config.json?raw';
import lori from '../../../fixtures/adapters/tiny-lori-r8/adapter_model.safetensors';
import qvConfig from '../../../fixtures/adapters/tiny-qv-r4/adapter_config.json?raw';
import qv from '../../../fixtures/adapters/tiny-qv-r4/adapter_model.safetensors';
import rsloraConfig from '../../../fixtures/adapters/tiny-rslora-r8/adapter_config.json?raw';
import rslora from '../../../fixtures/adapters/tiny-rslora-r8/adapter_model.safetensors';
import veraConfig from '../../../fixtures/adapters/tiny-vera-r16/adapter_config.json?raw';
import vera from '../../../fixtures/adapters/tiny-vera-r16/adapter_model.safetensors';
import storiesConfig from '../../../fixtures/models/stories260k/config.json?raw';
import stories from '../../../fixtures/models/stories260k/model.safetensors';

export const ADAPTER_FILES = {
  'tiny-qv-r4': [qvConfig, qv],
  'tiny-all-r8': [allConfig, all],
  'tiny-rslora-r8': [rsloraConfig, rslora],
  'tiny-dora-r4': [doraConfig, dora],
  'tiny-lori-r8': [loriConfig, lori],
  'tiny-vera-r16': [veraConfig, vera],
  'tiny-adalora-r8': [adaloraConfig, adalora],
} as const;
export type AdapterName = keyof typeof ADAPTER_FILES;
export const ADAPTER_NAMES = Object.keys(ADAPTER_FILES) as AdapterName[];

export async function sha256(data: ArrayBuffer | Uint8Array | string): Promise<string> {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const h = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return [...h].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Stores a model dir; returns its digest. */
export async function putModel(config: unknown, weights: ArrayBuffer | Uint8Array): Promise<string> {
  const digest = await sha256(weights);
  await env.BLOBS.put(`models/${digest}/config.json`, typeof config === 'string' ? config : JSON.stringify(config));
  await env.BLOBS.put(`models/${digest}/model.safetensors`, weights);
  return digest;
}

export async function putAdapter(tenant: string, name: string, config: unknown, weights: ArrayBuffer | Uint8Array) {
  const digest = await sha256(weights);
  const prefix = `adapters/${tenant}/${name}/${digest}`;
  await env.BLOBS.put(`${prefix}/adapter_config.json`, typeof config === 'string' ? config : JSON.stringify(config));
  await env.BLOBS.put(`${prefix}/adapter_model.safetensors`, weights);
  return { tenant, name, digest };
}

export async function seedStories(): Promise<string> {
  return putModel(storiesConfig, stories);
}

export async function seedAdapter(name: AdapterName) {
  const [config, weights] = ADAPTER_FILES[name];
  return putAdapter('t1', name, config, weights);
}
