import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.ts';

const base = { LORA_EDGE_GATEWAY_URL: 'http://127.0.0.1:8787/', LORA_EDGE_RUNNER_TOKEN: 'a-long-enough-runner-token' };

describe('runner settings', () => {
  it('has defaults for everything but the gateway and the token', () => {
    const c = loadConfig(base);
    expect(c).toMatchObject({
      gatewayUrl: 'http://127.0.0.1:8787',
      host: '0.0.0.0',
      port: 8790,
      advertisedUrl: undefined,
      blobs: { kind: 'gateway' },
      backend: 'auto',
      slots: 16,
      kvBytes: 2 ** 30,
      drainMs: 30_000,
    });
    expect(c.id).toMatch(/^[A-Za-z0-9][A-Za-z0-9._-]*-\d+$/);
    expect(c.cacheDir).toMatch(/lora-edge-runner-cache$/);
    expect(c.modelCacheBytes).toBe(c.maxModelBytes);
  });

  it('reads sizes with units, a local blob folder and S3', () => {
    const c = loadConfig({
      ...base,
      LORA_EDGE_KV_BYTES: '512MiB',
      LORA_EDGE_MAX_MODEL_BYTES: '8G',
      LORA_EDGE_ADAPTER_BYTES: '1048576',
      LORA_EDGE_RUNNER_PORT: '0',
      LORA_EDGE_BLOBS: 'dir:/data/r2',
      LORA_EDGE_RUNNER_ID: 'gpu-a.1',
    });
    expect(c).toMatchObject({ kvBytes: 512 * 2 ** 20, maxModelBytes: 8 * 2 ** 30, adapterBytes: 2 ** 20, port: 0, id: 'gpu-a.1' });
    expect(c.blobs).toEqual({ kind: 'dir', dir: '/data/r2' });
    const s3 = loadConfig({
      ...base,
      LORA_EDGE_BLOBS: 's3',
      LORA_EDGE_S3_ENDPOINT: 'https://acct.r2.cloudflarestorage.com',
      LORA_EDGE_S3_BUCKET: 'lora-edge',
      AWS_ACCESS_KEY_ID: 'k',
      AWS_SECRET_ACCESS_KEY: 's',
    });
    expect(s3.blobs).toMatchObject({ kind: 's3', bucket: 'lora-edge', region: 'auto' });
  });

  it.each([
    [{ LORA_EDGE_RUNNER_TOKEN: 'a-long-enough-runner-token' }, /LORA_EDGE_GATEWAY_URL: required/],
    [{ LORA_EDGE_GATEWAY_URL: 'http://x' }, /LORA_EDGE_RUNNER_TOKEN: required/],
    [{ ...base, LORA_EDGE_SLOTS: 'many' }, /LORA_EDGE_SLOTS: .*integer/],
    [{ ...base, LORA_EDGE_SLOTS: '0' }, /LORA_EDGE_SLOTS/],
    [{ ...base, LORA_EDGE_KV_BYTES: '12 parsecs' }, /LORA_EDGE_KV_BYTES: "12 parsecs" is not a byte size/],
    [{ ...base, LORA_EDGE_BACKEND: 'tpu' }, /LORA_EDGE_BACKEND/],
    [{ ...base, LORA_EDGE_GATEWAY_URL: 'ftp://x' }, /LORA_EDGE_GATEWAY_URL/],
    [{ ...base, LORA_EDGE_RUNNER_ID: 'bad id!' }, /LORA_EDGE_RUNNER_ID/],
    [{ ...base, LORA_EDGE_BLOBS: 'nfs' }, /LORA_EDGE_BLOBS/],
    [{ ...base, LORA_EDGE_BLOBS: 's3', LORA_EDGE_S3_BUCKET: 'b' }, /needs LORA_EDGE_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY/],
  ])('names the bad variable: %j', (env, msg) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(msg);
  });
});
