/**
 * Where model and adapter files come from (the gateway's blob route, a local folder laid out like
 * the R2 keys, or R2/S3 directly), and the disk cache in front of them: files land under
 * `<cacheDir>/<key>` (so a cached model is a model folder openModelDir reads), written to a temp
 * file and renamed, with a `.sha256` sidecar recording what was written. Content-addressed sets
 * (a model's or adapter's two files) are checked against their filesDigest before use.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { AwsClient } from 'aws4fetch';
import type { BlobsConfig } from './config.ts';
import { RunnerError } from './errors.ts';

export interface BlobSource {
  readonly kind: 'gateway' | 'dir' | 's3';
  /** The object's bytes as a stream; null when there is no such object. Throws RunnerError on trouble. */
  get(key: string): Promise<ReadableStream<Uint8Array> | null>;
}

/** R2 keys as the storage layer writes them: safe segments, no climbing. */
const KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*(\/[A-Za-z0-9][A-Za-z0-9._-]*)*$/;

export function assertKey(key: string): void {
  if (!KEY_RE.test(key) || key.includes('..') || key.length > 1024)
    throw new RunnerError('blob_key_invalid', `"${key}" is not a storage key`, false);
}

async function fromResponse(res: Response, what: string): Promise<ReadableStream<Uint8Array> | null> {
  if (res.status === 404) {
    await res.body?.cancel();
    return null;
  }
  if (!res.ok || !res.body) {
    const text = await res.text().catch(() => '');
    throw new RunnerError('blob_fetch_failed', `${what}: HTTP ${res.status} ${text.slice(0, 200)}`, true);
  }
  return res.body;
}

async function fetching(url: string, init: RequestInit | undefined, what: string, f: typeof fetch): Promise<Response> {
  try {
    return await f(url, init);
  } catch (e) {
    throw new RunnerError('blob_fetch_failed', `${what}: ${(e as Error).message}`, true);
  }
}

/** GET {gateway}/runners/blobs/<key> with the runner token. */
export function gatewayBlobs(gatewayUrl: string, token: string, f: typeof fetch = fetch): BlobSource {
  return {
    kind: 'gateway',
    async get(key) {
      assertKey(key);
      const what = `gateway blob ${key}`;
      const res = await fetching(`${gatewayUrl}/runners/blobs/${key}`, { headers: { authorization: `Bearer ${token}` } }, what, f);
      return fromResponse(res, what);
    },
  };
}

/** A folder laid out like the bucket (models/<digest>/config.json …). */
export function dirBlobs(dir: string): BlobSource {
  const root = resolve(dir);
  return {
    kind: 'dir',
    async get(key) {
      assertKey(key);
      const path = resolve(root, key);
      if (!path.startsWith(root + sep)) throw new RunnerError('blob_key_invalid', `"${key}" leaves the blob folder`, false);
      try {
        if (!(await stat(path)).isFile()) return null;
      } catch {
        return null;
      }
      return Readable.toWeb(createReadStream(path)) as ReadableStream<Uint8Array>;
    },
  };
}

/** SigV4 signing for an S3-compatible bucket (R2's S3 API). */
export function s3Client(cfg: Extract<BlobsConfig, { kind: 's3' }>): AwsClient {
  return new AwsClient({
    accessKeyId: cfg.accessKeyId,
    secretAccessKey: cfg.secretAccessKey,
    service: 's3',
    region: cfg.region,
    retries: 2,
  });
}

/** An S3-compatible bucket (R2: https://<account>.r2.cloudflarestorage.com), path-style, SigV4. */
export function s3Blobs(cfg: Extract<BlobsConfig, { kind: 's3' }>, f: typeof fetch = fetch): BlobSource {
  const client = s3Client(cfg);
  return {
    kind: 's3',
    async get(key) {
      assertKey(key);
      const what = `s3 object ${key}`;
      let req: Request;
      try {
        req = await client.sign(`${cfg.endpoint}/${cfg.bucket}/${key}`, { method: 'GET' });
      } catch (e) {
        throw new RunnerError('blob_fetch_failed', `${what}: ${(e as Error).message}`, true);
      }
      return fromResponse(await fetching(req.url, { headers: req.headers }, what, f), what);
    },
  };
}

export function blobSource(cfg: BlobsConfig, gatewayUrl: string, token: string): BlobSource {
  if (cfg.kind === 'dir') return dirBlobs(cfg.dir);
  if (cfg.kind === 's3') return s3Blobs(cfg);
  return gatewayBlobs(gatewayUrl, token);
}

export interface CachedFile {
  path: string;
  size: number;
  sha256: string;
}

const RETRY_DELAYS_MS = [200, 1000, 3000];

export class BlobCache {
  private readonly inflight = new Map<string, Promise<CachedFile>>();

  constructor(
    readonly dir: string,
    readonly source: BlobSource,
  ) {}

  pathOf(key: string): string {
    assertKey(key);
    return join(this.dir, key);
  }

  /** The object on local disk, fetched once (concurrent callers share the fetch). */
  file(key: string): Promise<CachedFile> {
    let p = this.inflight.get(key);
    if (!p) {
      p = this.load(key).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    return p;
  }

  /**
   * The files of one content-addressed folder (`prefix` = models/<digest>/ …), checked against
   * the digest (filesDigest: SHA-256 over `lora-edge-files-v1` and one `<name> <sha256>` line per
   * file, names sorted). A mismatch drops the cached copies and fails retryably: the next try refetches.
   */
  async files(prefix: string, names: readonly string[], digest: string): Promise<Record<string, CachedFile>> {
    const got = await Promise.all(names.map((n) => this.file(prefix + n)));
    const out: Record<string, CachedFile> = {};
    names.forEach((n, i) => {
      out[n] = got[i] as CachedFile;
    });
    const lines = ['lora-edge-files-v1', ...[...names].sort().map((n) => `${n} ${out[n]?.sha256}`)];
    const actual = createHash('sha256')
      .update(`${lines.join('\n')}\n`)
      .digest('hex');
    if (actual !== digest) {
      await Promise.all(names.map((n) => this.remove(prefix + n)));
      throw new RunnerError('blob_digest_mismatch', `${prefix}: the files hash to ${actual}, not the digest they are stored under`, true);
    }
    return out;
  }

  async remove(key: string): Promise<void> {
    const path = this.pathOf(key);
    await rm(`${path}.sha256`, { force: true });
    await rm(path, { force: true });
  }

  private async load(key: string): Promise<CachedFile> {
    const path = this.pathOf(key);
    const hit = await this.cached(path);
    if (hit) return hit;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.fetchTo(key, path);
      } catch (e) {
        const delay = RETRY_DELAYS_MS[attempt];
        if (!(e instanceof RunnerError && e.retryable && e.code === 'blob_fetch_failed') || delay === undefined) throw e;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** A file counts as cached only with its sidecar (written last) and the size it records. */
  private async cached(path: string): Promise<CachedFile | undefined> {
    try {
      const [sha256, size] = (await readFile(`${path}.sha256`, 'utf8')).trim().split(' ');
      if (!sha256 || Number(size) !== (await stat(path)).size) return undefined;
      return { path, size: Number(size), sha256 };
    } catch {
      return undefined;
    }
  }

  private async fetchTo(key: string, path: string): Promise<CachedFile> {
    const body = await this.source.get(key);
    if (!body) throw new RunnerError('blob_missing', `no object ${key} in the ${this.source.kind} blob store`, true);
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const hash = createHash('sha256');
    let size = 0;
    try {
      const fh = await open(tmp, 'w');
      try {
        for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
          hash.update(chunk);
          size += chunk.byteLength;
          await fh.write(chunk);
        }
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
    } catch (e) {
      await rm(tmp, { force: true });
      if (e instanceof RunnerError) throw e;
      throw new RunnerError('blob_fetch_failed', `${key}: ${(e as Error).message}`, true);
    }
    const sha256 = hash.digest('hex');
    const sideTmp = `${tmp}.sha256`;
    await writeFile(sideTmp, `${sha256} ${size}\n`);
    await rename(sideTmp, `${path}.sha256`);
    return { path, size, sha256 };
  }
}
