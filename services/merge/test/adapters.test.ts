import { env } from 'cloudflare:workers';
import { fromFloat32, serializeSafetensors } from '@lora-edge/shared';
import { beforeAll, describe, expect, it } from 'vitest';
import { registerAdapter } from '../src/adapters/ingest.ts';
import { adapterKey, listAll, MemoryKeyValueStore, Registry } from '../src/lib.ts';
import { auth, call, errorOf, FIXTURES, jsonInit, newTenant, registerStories, upload, uploadOk } from './helpers.ts';

beforeAll(async () => {
  await registerStories();
});

/** Nothing of the tenant's in R2 or the registry. */
async function expectNothingStored(tenant: string): Promise<void> {
  expect(await listAll(env.BLOBS, `adapters/${tenant}/`)).toEqual([]);
  expect((await env.REGISTRY.list({ prefix: `adapter/${tenant}/` })).keys).toEqual([]);
}

/** An adapter for a wider model: q_proj takes 128 inputs where stories260k has 64. */
function wrongBaseWeights(): Uint8Array {
  const A = fromFloat32(new Float32Array(4 * 128).fill(0.01), 'F32', [4, 128]);
  const B = fromFloat32(new Float32Array(64 * 4).fill(0.01), 'F32', [64, 4]);
  return serializeSafetensors(
    [
      { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', ...A },
      { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', ...B },
    ],
    { metadata: { format: 'pt' } },
  );
}

describe('PUT /v1/adapters/:name', () => {
  it('validates, stores content-addressed in R2, then registers', async () => {
    const t = await newTenant();
    const res = await upload(t.key, 'qv', FIXTURES['tiny-qv-r4'], {
      base: 'stories260k',
      visibility: 'shared',
      examples: '["Once upon a time"]',
    });
    expect(res.status).toBe(201);
    const { adapter } = (await res.json()) as { adapter: Record<string, unknown> & { digest: string } };
    expect(adapter).toMatchObject({
      id: `${t.id}/qv`,
      tenant: t.id,
      name: 'qv',
      base: 'stories260k',
      visibility: 'shared',
      peft_type: 'LORA',
      use_dora: false,
      rank: 4,
      modules: 10,
      examples: ['Once upon a time'],
      source: { kind: 'upload' },
    });
    expect(adapter.digest).toMatch(/^[0-9a-f]{64}$/);
    const objects = await listAll(env.BLOBS, `adapters/${t.id}/`);
    expect(objects.map((o) => o.key).sort()).toEqual([
      adapterKey(t.id, 'qv', adapter.digest, 'adapter_config.json'),
      adapterKey(t.id, 'qv', adapter.digest, 'adapter_model.safetensors'),
    ]);
    const stored = await env.BLOBS.get(adapterKey(t.id, 'qv', adapter.digest, 'adapter_model.safetensors'));
    expect(new Uint8Array(await stored!.arrayBuffer())).toEqual(FIXTURES['tiny-qv-r4'].weights);

    // The registry answers by name; the same upload again is a no-op.
    const got = await call('/v1/adapters/qv', auth(t.key));
    expect(((await got.json()) as { adapter: { digest: string } }).adapter.digest).toBe(adapter.digest);
    expect((await upload(t.key, 'qv', FIXTURES['tiny-qv-r4'])).status).toBe(200);
    const list = (await (await call('/v1/adapters', auth(t.key))).json()) as { adapters: unknown[] };
    expect(list.adapters).toHaveLength(1);

    // Shared: another tenant sees it under tenant/name; a private one stays hidden.
    const other = await newTenant();
    expect((await call(`/v1/adapters/${t.id}/qv`, auth(other.key))).status).toBe(200);
    await uploadOk(t.key, 'hidden', 'tiny-all-r8');
    expect(await errorOf(await call(`/v1/adapters/${t.id}/hidden`, auth(other.key)))).toMatchObject({
      status: 404,
      code: 'adapter_not_found',
    });
  });

  it('takes the base from adapter_config.json when none is given', async () => {
    const t = await newTenant();
    const res = await upload(t.key, 'qv', FIXTURES['tiny-qv-r4']);
    expect(res.status).toBe(201);
  });

  const bad: [string, (t: { key: string }) => Promise<Response>, number, string][] = [
    ['no API key', () => upload('', 'x', FIXTURES['tiny-qv-r4']).then((r) => r), 401, 'unauthorized'],
    ['a wrong API key', () => upload(`lek_${'0'.repeat(16)}_${'a'.repeat(43)}`, 'x', FIXTURES['tiny-qv-r4']), 401, 'unauthorized'],
    [
      'an adapter for another base',
      (t) => upload(t.key, 'x', { config: FIXTURES['tiny-qv-r4'].config, weights: wrongBaseWeights() }, { base: 'stories260k' }),
      422,
      'adapter_base_mismatch',
    ],
    ['an unknown base', (t) => upload(t.key, 'x', FIXTURES['tiny-qv-r4'], { base: 'nope' }), 422, 'base_model_unknown'],
    [
      'malformed safetensors',
      (t) => upload(t.key, 'x', { config: FIXTURES['tiny-qv-r4'].config, weights: new Uint8Array([9, 9, 9]) }, { base: 'stories260k' }),
      400,
      'safetensors_truncated',
    ],
    [
      'malformed JSON',
      (t) => upload(t.key, 'x', { config: '{"r": 4,', weights: FIXTURES['tiny-qv-r4'].weights }, { base: 'stories260k' }),
      400,
      'invalid_json',
    ],
    [
      'a config that is not PEFT',
      (t) => upload(t.key, 'x', { config: '{"r": "four"}', weights: FIXTURES['tiny-qv-r4'].weights }, { base: 'stories260k' }),
      400,
      'adapter_config_invalid',
    ],
    [
      'too many bytes',
      (t) => upload(t.key, 'x', { config: FIXTURES['tiny-qv-r4'].config, weights: new Uint8Array(1_100_000) }, { base: 'stories260k' }),
      413,
      'adapter_too_large',
    ],
    [
      'a missing part',
      (t) =>
        call(
          '/v1/adapters/x',
          auth(t.key, {
            method: 'PUT',
            body: (() => {
              const f = new FormData();
              f.append('adapter_config.json', new Blob([FIXTURES['tiny-qv-r4'].config]), 'adapter_config.json');
              return f;
            })(),
          }),
        ),
      400,
      'upload_incomplete',
    ],
    ['a JSON body', (t) => call('/v1/adapters/x', jsonInit('PUT', { config: 1 }, t.key)), 415, 'unsupported_media_type'],
    ['a bad name', (t) => upload(t.key, 'a..b', FIXTURES['tiny-qv-r4']), 400, 'invalid_request'],
    ['bad examples', (t) => upload(t.key, 'x', FIXTURES['tiny-qv-r4'], { examples: '[1,2]' }), 400, 'invalid_request'],
  ];
  for (const [what, send, status, code] of bad) {
    it(`refuses ${what}: ${status} ${code}, nothing stored`, async () => {
      const t = await newTenant();
      const res = await send(t);
      const e = await errorOf(res);
      expect(e, e.message).toMatchObject({ status, code });
      expect(e.message.length).toBeGreaterThan(10);
      await expectNothingStored(t.id);
    });
  }

  it('names the mismatch when the base differs', async () => {
    const t = await newTenant();
    const e = await errorOf(
      await upload(t.key, 'x', { config: FIXTURES['tiny-qv-r4'].config, weights: wrongBaseWeights() }, { base: 'stories260k' }),
    );
    expect(e.message).toContain('model.layers.0.self_attn.q_proj');
    expect(e.message).toContain('64×128');
  });

  it('leaves no objects behind when the registry write fails', async () => {
    const t = await newTenant();
    const kv = new MemoryKeyValueStore();
    const reg = new Registry(kv);
    await kv.put('model/stories260k', (await env.REGISTRY.get('model/stories260k')) as string);
    const failing = Object.assign(Object.create(reg) as Registry, {
      putAdapter: () => Promise.reject(new Error('KV unavailable')),
    });
    const f = FIXTURES['tiny-qv-r4'];
    await expect(
      registerAdapter(env.BLOBS, failing, {
        tenant: t.id,
        name: 'x',
        base: 'stories260k',
        configBytes: new TextEncoder().encode(f.config),
        weights: f.weights,
        source: { kind: 'upload' },
      }),
    ).rejects.toThrow('KV unavailable');
    await expectNothingStored(t.id);
  });
});

describe('POST /v1/adapters (by URL)', () => {
  it('fetches a Hub repo over HTTPS (weights through the CDN redirect) and registers it', async () => {
    const t = await newTenant();
    const res = await call(
      '/v1/adapters',
      jsonInit('POST', { url: 'https://huggingface.co/lora-edge-test/tiny-all-r8', base: 'stories260k' }, t.key),
    );
    expect(res.status, await res.clone().text()).toBe(201);
    const { adapter } = (await res.json()) as { adapter: { name: string; rank: number; source: unknown; digest: string } };
    expect(adapter).toMatchObject({
      name: 'tiny-all-r8',
      rank: 8,
      source: { kind: 'hf', repo: 'lora-edge-test/tiny-all-r8', revision: 'main' },
    });
    // Same bytes as an upload of the same files: content addressing.
    const up = await uploadOk(t.key, 'copy', 'tiny-all-r8');
    expect(up.digest).toBe(adapter.digest);
  });

  const bad: [string, unknown, number, string][] = [
    ['a repo that does not exist', { url: 'https://huggingface.co/lora-edge-test/missing' }, 422, 'source_not_found'],
    ['a host not allowed', { url: 'https://example.com/adapters/x/' }, 422, 'source_host_not_allowed'],
    ['plain http', { url: 'http://huggingface.co/lora-edge-test/tiny-qv-r4' }, 400, 'invalid_url'],
    ['an oversize remote file', { url: 'https://huggingface.co/lora-edge-test/huge', name: 'huge' }, 413, 'adapter_too_large'],
    ['a wrong base', { url: 'https://huggingface.co/lora-edge-test/tiny-qv-r4', base: 'nope' }, 422, 'base_model_unknown'],
    ['an unknown field', { url: 'https://huggingface.co/lora-edge-test/tiny-qv-r4', colour: 'red' }, 400, 'invalid_request'],
  ];
  for (const [what, body, status, code] of bad) {
    it(`refuses ${what}: ${status} ${code}`, async () => {
      const t = await newTenant();
      expect(await errorOf(await call('/v1/adapters', jsonInit('POST', body, t.key)))).toMatchObject({ status, code });
      await expectNothingStored(t.id);
    });
  }
});

describe('PATCH /admin/models/:id (placement)', () => {
  it('pins a base model to the GPU runners and back; refuses unknown placements and models', async () => {
    await registerStories('placed-model');
    const patch = (id: string, body: unknown, token = 'test-admin-token') =>
      call(
        `/admin/models/${id}`,
        auth(token, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
      );
    const pinned = await patch('placed-model', { placement: 'gpu' });
    expect(pinned.status).toBe(200);
    expect(((await pinned.json()) as { model: { placement: string } }).model.placement).toBe('gpu');
    expect(await errorOf(await patch('placed-model', { placement: 'moon' }))).toMatchObject({ status: 400 });
    expect(await errorOf(await patch('no-such-model', { placement: 'gpu' }))).toMatchObject({ status: 404, code: 'model_not_found' });
    expect((await patch('placed-model', { placement: 'gpu' }, 'wrong')).status).toBe(401);
  });
});
