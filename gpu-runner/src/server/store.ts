/**
 * The object store a merge build reads its inputs from and writes its artifact to, over the
 * runner's blob settings: the gateway's blob route (R2 through the Worker; it lets runners write
 * only under artifacts/), a local folder (atomic writes: temp file + rename), or R2's S3 API.
 * It is the shared ObjectStore interface, so shared/builder runs here exactly as in the merge
 * Worker, manifest last.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, resolve, sep } from 'node:path';
import type { ObjectStore, ObjectValue, StoredObject, StoredObjectBody } from '@lora-edge/shared';
import { assertKey, s3Client } from './blobs.ts';
import type { BlobsConfig } from './config.ts';
import { RunnerError } from './errors.ts';

function bytesOf(v: ObjectValue): Uint8Array<ArrayBuffer> {
  if (typeof v === 'string') return new TextEncoder().encode(v);
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  const out = new Uint8Array(v.byteLength);
  out.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  return out;
}

function body(key: string, bytes: Uint8Array): StoredObjectBody {
  return {
    key,
    size: bytes.byteLength,
    arrayBuffer: async () => bytes.slice().buffer,
    text: async () => new TextDecoder().decode(bytes),
  };
}

/** The store over raw get/put of bytes; list and delete are not a runner's business. */
function storeOver(
  get: (key: string) => Promise<Uint8Array | null>,
  put: (key: string, b: Uint8Array<ArrayBuffer>) => Promise<void>,
): ObjectStore {
  const unsupported = (op: string) => {
    throw new RunnerError('store_unsupported', `a runner does not ${op} objects`, false);
  };
  return {
    async get(key) {
      assertKey(key);
      const b = await get(key);
      return b ? body(key, b) : null;
    },
    async head(key): Promise<StoredObject | null> {
      assertKey(key);
      const b = await get(key);
      return b ? { key, size: b.byteLength } : null;
    },
    async put(key, value) {
      assertKey(key);
      const b = bytesOf(value);
      await put(key, b);
      return { key, size: b.byteLength };
    },
    list: async () => unsupported('list'),
    delete: async () => unsupported('delete'),
  };
}

async function send(what: string, p: () => Promise<Response>): Promise<Response> {
  let res: Response;
  try {
    res = await p();
  } catch (e) {
    throw new RunnerError('blob_fetch_failed', `${what}: ${(e as Error).message}`, true);
  }
  return res;
}

async function bytesOrNull(res: Response, what: string): Promise<Uint8Array | null> {
  if (res.status === 404) {
    await res.body?.cancel();
    return null;
  }
  if (!res.ok) throw new RunnerError('blob_fetch_failed', `${what}: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`, true);
  return new Uint8Array(await res.arrayBuffer());
}

async function ok(res: Response, what: string): Promise<void> {
  if (!res.ok) throw new RunnerError('blob_write_failed', `${what}: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`, true);
  await res.body?.cancel();
}

export function objectStore(cfg: BlobsConfig, gatewayUrl: string, token: string, f: typeof fetch = fetch): ObjectStore {
  if (cfg.kind === 'dir') {
    const root = resolve(cfg.dir);
    const path = (key: string) => {
      const p = resolve(root, key);
      if (!p.startsWith(root + sep)) throw new RunnerError('blob_key_invalid', `"${key}" leaves the blob folder`, false);
      return p;
    };
    return storeOver(
      async (key) => {
        try {
          if (!(await stat(path(key))).isFile()) return null;
        } catch {
          return null;
        }
        return new Uint8Array(await readFile(path(key)));
      },
      async (key, b) => {
        const p = path(key);
        await mkdir(dirname(p), { recursive: true });
        const tmp = `${p}.${randomBytes(6).toString('hex')}.tmp`;
        await writeFile(tmp, b);
        await rename(tmp, p);
      },
    );
  }
  if (cfg.kind === 's3') {
    const client = s3Client(cfg);
    const url = (key: string) => `${cfg.endpoint}/${cfg.bucket}/${key}`;
    return storeOver(
      async (key) => {
        const req = await client.sign(url(key), { method: 'GET' });
        return bytesOrNull(await send(`s3 object ${key}`, () => f(req.url, { headers: req.headers })), `s3 object ${key}`);
      },
      async (key, b) => {
        const req = await client.sign(url(key), { method: 'PUT', body: b });
        await ok(await send(`s3 put ${key}`, () => f(req.url, { method: 'PUT', headers: req.headers, body: b })), `s3 put ${key}`);
      },
    );
  }
  const auth = { authorization: `Bearer ${token}` };
  return storeOver(
    async (key) =>
      bytesOrNull(
        await send(`gateway blob ${key}`, () => f(`${gatewayUrl}/runners/blobs/${key}`, { headers: auth })),
        `gateway blob ${key}`,
      ),
    async (key, b) =>
      ok(
        await send(`gateway put ${key}`, () => f(`${gatewayUrl}/runners/blobs/${key}`, { method: 'PUT', headers: auth, body: b })),
        `gateway put ${key}`,
      ),
  );
}
