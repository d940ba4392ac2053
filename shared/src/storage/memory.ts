import type {
  KeyValueList,
  KeyValuePutOptions,
  KeyValueStore,
  ObjectList,
  ObjectListOptions,
  ObjectPutOptions,
  ObjectStore,
  ObjectValue,
  StoredObject,
  StoredObjectBody,
} from './store.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function toBytes(value: ObjectValue): Uint8Array {
  if (typeof value === 'string') return encoder.encode(value);
  if (value instanceof ArrayBuffer) return new Uint8Array(value.slice(0));
  return new Uint8Array(value.buffer, value.byteOffset, value.byteLength).slice();
}

/** ObjectStore in a Map, for plain unit tests. Lists in key order, like R2. */
export class MemoryObjectStore implements ObjectStore {
  readonly objects = new Map<string, { bytes: Uint8Array; meta: StoredObject }>();

  async put(key: string, value: ObjectValue, options: ObjectPutOptions = {}): Promise<StoredObject> {
    const bytes = toBytes(value);
    const meta: StoredObject = { key, size: bytes.byteLength, uploaded: new Date() };
    if (options.customMetadata) meta.customMetadata = { ...options.customMetadata };
    this.objects.set(key, { bytes, meta });
    return meta;
  }

  async get(key: string): Promise<StoredObjectBody | null> {
    const o = this.objects.get(key);
    if (!o) return null;
    const bytes = o.bytes;
    return {
      ...o.meta,
      arrayBuffer: async () => bytes.slice().buffer,
      text: async () => decoder.decode(bytes),
    };
  }

  async head(key: string): Promise<StoredObject | null> {
    const o = this.objects.get(key);
    return o ? { ...o.meta } : null;
  }

  async list(options: ObjectListOptions = {}): Promise<ObjectList> {
    const prefix = options.prefix ?? '';
    const limit = options.limit ?? 1000;
    const keys = [...this.objects.keys()]
      .filter((k) => k.startsWith(prefix) && (options.cursor === undefined || k > options.cursor))
      .sort();
    const page = keys.slice(0, limit);
    const objects = page.map((k) => ({ ...(this.objects.get(k) as { meta: StoredObject }).meta }));
    const truncated = keys.length > limit;
    return truncated ? { objects, truncated, cursor: page[page.length - 1] as string } : { objects, truncated };
  }

  async delete(keys: string | string[]): Promise<void> {
    for (const k of Array.isArray(keys) ? keys : [keys]) this.objects.delete(k);
  }
}

/** KeyValueStore in a Map, with expirations against an injectable clock (milliseconds). */
export class MemoryKeyValueStore implements KeyValueStore {
  readonly entries = new Map<string, { value: string; expires?: number }>();
  constructor(private readonly now: () => number = Date.now) {}

  private live(key: string): string | null {
    const e = this.entries.get(key);
    if (!e) return null;
    if (e.expires !== undefined && e.expires <= this.now()) {
      this.entries.delete(key);
      return null;
    }
    return e.value;
  }

  async get(key: string): Promise<string | null> {
    return this.live(key);
  }

  async put(key: string, value: string, options: KeyValuePutOptions = {}): Promise<void> {
    const entry: { value: string; expires?: number } = { value };
    if (options.expirationTtl !== undefined) entry.expires = this.now() + options.expirationTtl * 1000;
    this.entries.set(key, entry);
  }

  async delete(key: string): Promise<void> {
    this.entries.delete(key);
  }

  async list(options: { prefix?: string; cursor?: string; limit?: number } = {}): Promise<KeyValueList> {
    const prefix = options.prefix ?? '';
    const limit = options.limit ?? 1000;
    const names = [...this.entries.keys()]
      .filter((k) => k.startsWith(prefix) && (options.cursor === undefined || k > options.cursor) && this.live(k) !== null)
      .sort();
    const page = names.slice(0, limit);
    const keys = page.map((name) => ({ name }));
    return names.length > limit ? { keys, list_complete: false, cursor: page[page.length - 1] as string } : { keys, list_complete: true };
  }
}
