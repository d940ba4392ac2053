import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { filesDigest } from '@lora-edge/shared';
import { afterAll, describe, expect, it } from 'vitest';
import { BlobCache, type BlobSource, dirBlobs, s3Blobs } from './blobs.ts';
import { RunnerError } from './errors.ts';
import { removeTempDirs, tempDir } from './testing.ts';

const tmp = () => tempDir('lora-edge-blobs-');
afterAll(removeTempDirs);
const bytes = (s: string) => new TextEncoder().encode(s);

function memory(objects: Record<string, string>): BlobSource & { gets: string[] } {
  const gets: string[] = [];
  return {
    kind: 'gateway',
    gets,
    async get(key) {
      gets.push(key);
      const v = objects[key];
      return v === undefined ? null : new Response(v).body;
    },
  };
}

describe('blob sources and the disk cache', () => {
  it('reads a local folder laid out like the bucket, and refuses keys that climb out', async () => {
    const root = tmp();
    mkdirSync(join(root, 'models', 'm'), { recursive: true });
    writeFileSync(join(root, 'models', 'm', 'config.json'), '{}');
    const src = dirBlobs(root);
    expect(await new Response(await src.get('models/m/config.json')).text()).toBe('{}');
    expect(await src.get('models/m/absent')).toBeNull();
    await expect(src.get('../etc/passwd')).rejects.toThrow(RunnerError);
    await expect(src.get('/etc/passwd')).rejects.toThrow(/not a storage key/);
  });

  it('signs S3 requests (path style, SigV4, region auto) and maps 404 to null', async () => {
    const seen: Request[] = [];
    const f = (async (url: string, init: RequestInit) => {
      seen.push(new Request(url, init));
      return new Response(url.endsWith('/absent') ? null : 'data', { status: url.endsWith('/absent') ? 404 : 200 });
    }) as typeof fetch;
    const src = s3Blobs(
      {
        kind: 's3',
        endpoint: 'https://acct.r2.cloudflarestorage.com',
        bucket: 'b',
        accessKeyId: 'AK',
        secretAccessKey: 'SK',
        region: 'auto',
      },
      f,
    );
    expect(await new Response(await src.get('models/x/config.json')).text()).toBe('data');
    expect(await src.get('models/x/absent')).toBeNull();
    expect(seen[0]!.url).toBe('https://acct.r2.cloudflarestorage.com/b/models/x/config.json');
    expect(seen[0]!.headers.get('authorization')).toMatch(/^AWS4-HMAC-SHA256 Credential=AK\/\d{8}\/auto\/s3\/aws4_request/);
  });

  it('fetches each key once, writes atomically with a sha256 sidecar, and serves later reads from disk', async () => {
    const dir = tmp();
    const src = memory({ 'models/d/config.json': '{"a":1}' });
    const cache = new BlobCache(dir, src);
    const [a, b] = await Promise.all([cache.file('models/d/config.json'), cache.file('models/d/config.json')]);
    expect(a).toEqual(b);
    expect(src.gets).toEqual(['models/d/config.json']);
    expect(readFileSync(a.path, 'utf8')).toBe('{"a":1}');
    expect(readdirSync(join(dir, 'models', 'd')).sort()).toEqual(['config.json', 'config.json.sha256']);
    const again = await new BlobCache(dir, src).file('models/d/config.json');
    expect(again).toEqual(a);
    expect(src.gets).toHaveLength(1);
    await expect(cache.file('models/d/absent')).rejects.toMatchObject({ code: 'blob_missing', retryable: true });
  });

  it('checks a content-addressed set against its files digest and drops a bad copy', async () => {
    const files = { 'adapter_config.json': '{"r":4}', 'adapter_model.safetensors': 'weights' };
    const { digest } = await filesDigest({
      'adapter_config.json': bytes(files['adapter_config.json']),
      'adapter_model.safetensors': bytes('weights'),
    });
    const prefix = `adapters/t/n/${digest}/`;
    const good = new BlobCache(
      tmp(),
      memory({ [`${prefix}adapter_config.json`]: files['adapter_config.json'], [`${prefix}adapter_model.safetensors`]: 'weights' }),
    );
    const got = await good.files(prefix, ['adapter_config.json', 'adapter_model.safetensors'], digest);
    expect(got['adapter_model.safetensors']!.size).toBe(7);
    const dir = tmp();
    const bad = new BlobCache(
      dir,
      memory({ [`${prefix}adapter_config.json`]: files['adapter_config.json'], [`${prefix}adapter_model.safetensors`]: 'tampered' }),
    );
    await expect(bad.files(prefix, ['adapter_config.json', 'adapter_model.safetensors'], digest)).rejects.toMatchObject({
      code: 'blob_digest_mismatch',
      retryable: true,
    });
    expect(readdirSync(join(dir, 'adapters', 't', 'n', digest))).toEqual([]);
  });

  it('retries a failed fetch, then gives up retryably', async () => {
    let calls = 0;
    const flaky: BlobSource = {
      kind: 'gateway',
      async get() {
        calls++;
        if (calls < 2) throw new RunnerError('blob_fetch_failed', 'boom', true);
        return new Response('ok').body;
      },
    };
    expect((await new BlobCache(tmp(), flaky).file('k/one')).size).toBe(2);
    expect(calls).toBe(2);
  });
});
