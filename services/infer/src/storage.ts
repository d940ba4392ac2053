/**
 * Reading models and adapters from R2 (the merge service writes them):
 *   models/<digest>/{config.json, model.safetensors}
 *   adapters/<tenant>/<name>/<digest>/{adapter_config.json, adapter_model.safetensors}
 * Keys are content-addressed, so what an isolate caches never goes stale.
 */
import { ApiError } from './errors.ts';

const DIGEST_RE = /^[0-9a-f]{64}$/;
const SEGMENT_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export interface ModelRef {
  digest: string;
}

export interface AdapterRef {
  tenant: string;
  name: string;
  digest: string;
}

function check(value: string, re: RegExp, field: string): string {
  if (!re.test(value) || value.includes('..')) throw new ApiError(400, 'invalid_argument', `"${value}" is not a valid ${field}`, { field });
  return value;
}

export function modelKey(m: ModelRef, file: string): string {
  return `models/${check(m.digest, DIGEST_RE, 'model digest')}/${file}`;
}

export function adapterKey(a: AdapterRef, file: string): string {
  return `adapters/${check(a.tenant, SEGMENT_RE, 'tenant')}/${check(a.name, SEGMENT_RE, 'adapter name')}/${check(a.digest, DIGEST_RE, 'adapter digest')}/${file}`;
}

/** An object's bytes, or 404 `not_found` naming the key. */
export async function getBytes(bucket: R2Bucket, key: string, range?: { offset: number; length: number }): Promise<Uint8Array> {
  const obj = await bucket.get(key, range ? { range } : undefined);
  if (!obj) throw new ApiError(404, 'not_found', `no object at ${key}`, { file: key });
  return new Uint8Array(await obj.arrayBuffer());
}

export async function getText(bucket: R2Bucket, key: string): Promise<string> {
  return new TextDecoder().decode(await getBytes(bucket, key));
}

export async function headSize(bucket: R2Bucket, key: string): Promise<number> {
  const obj = await bucket.head(key);
  if (!obj) throw new ApiError(404, 'not_found', `no object at ${key}`, { file: key });
  return obj.size;
}
