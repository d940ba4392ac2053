/**
 * The two storage shapes the services use, cut down to what the code calls. Cloudflare's
 * R2Bucket satisfies ObjectStore and KVNamespace satisfies KeyValueStore, so the same code runs
 * against miniflare's emulation, production, and the in-memory maps of memory.ts in unit tests.
 */

export interface StoredObject {
  key: string;
  size: number;
  uploaded?: Date;
  customMetadata?: Record<string, string>;
}

export interface StoredObjectBody extends StoredObject {
  arrayBuffer(): Promise<ArrayBuffer>;
  text(): Promise<string>;
}

export type ObjectValue = ArrayBuffer | ArrayBufferView | string;

export interface ObjectPutOptions {
  customMetadata?: Record<string, string>;
  httpMetadata?: { contentType?: string };
}

export interface ObjectListOptions {
  prefix?: string;
  cursor?: string;
  limit?: number;
}

export interface ObjectList {
  objects: StoredObject[];
  truncated: boolean;
  cursor?: string;
}

export interface ObjectStore {
  put(key: string, value: ObjectValue, options?: ObjectPutOptions): Promise<StoredObject | null>;
  get(key: string): Promise<StoredObjectBody | null>;
  head(key: string): Promise<StoredObject | null>;
  list(options?: ObjectListOptions): Promise<ObjectList>;
  delete(keys: string | string[]): Promise<void>;
}

export interface KeyValuePutOptions {
  /** Seconds; Workers KV refuses less than 60. */
  expirationTtl?: number;
}

export interface KeyValueList {
  keys: { name: string }[];
  list_complete: boolean;
  cursor?: string;
}

export interface KeyValueStore {
  get(key: string): Promise<string | null>;
  put(key: string, value: string, options?: KeyValuePutOptions): Promise<void>;
  delete(key: string): Promise<void>;
  list(options?: { prefix?: string; cursor?: string; limit?: number }): Promise<KeyValueList>;
}

/** Every object under `prefix`, following list cursors. */
export async function listAll(store: ObjectStore, prefix: string): Promise<StoredObject[]> {
  const out: StoredObject[] = [];
  let cursor: string | undefined;
  do {
    const page = await store.list(cursor === undefined ? { prefix } : { prefix, cursor });
    out.push(...page.objects);
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor !== undefined);
  return out;
}

/** Every key under `prefix`, following list cursors. */
export async function listAllKeys(kv: KeyValueStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await kv.list(cursor === undefined ? { prefix } : { prefix, cursor });
    out.push(...page.keys.map((k) => k.name));
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor !== undefined);
  return out;
}
