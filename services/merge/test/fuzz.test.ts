/**
 * Hostile input never reaches a 5xx: the webhook parsers (headers, signature, body) and upload
 * validation answer mutated input with a 4xx (or accept it when it is still valid), and a refused
 * upload leaves nothing stored.
 */
import { env } from 'cloudflare:workers';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { listAll, signWebhook } from '../src/lib.ts';
import { auth, call, FIXTURES, form, GENERIC_SECRET, newTenant, registerStories, signedWebhook } from './helpers.ts';

beforeAll(async () => {
  await registerStories();
});

function setPath(obj: unknown, path: string[], value: unknown): unknown {
  if (path.length === 0) return value;
  const [head, ...rest] = path as [string, ...string[]];
  const copy: Record<string, unknown> = Array.isArray(obj)
    ? ([...obj] as unknown as Record<string, unknown>)
    : { ...(obj as Record<string, unknown>) };
  copy[head] = setPath(copy[head] ?? {}, rest, value);
  return copy;
}

describe('fuzz: webhooks', () => {
  it('answers arbitrary headers and bodies with 4xx', async () => {
    const header = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.constantFrom('sha256=', `sha256=${'0'.repeat(64)}`, '0', '-1', '99999999999999'),
    );
    await fc.assert(
      fc.asyncProperty(fc.option(header), fc.option(header), fc.string({ maxLength: 200 }), async (ts, sig, body) => {
        const headers: Record<string, string> = {};
        if (ts !== null) headers['x-loraedge-timestamp'] = ts.replace(/[\r\n\0]/g, '');
        if (sig !== null) headers['x-loraedge-signature'] = sig.replace(/[\r\n\0]/g, '');
        const res = await call('/webhooks/generic', { method: 'POST', headers, body });
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
        expect(((await res.json()) as { error: { code: string } }).error.code).toMatch(/^[a-z_]+$/);
      }),
      { numRuns: 60 },
    );
  });

  it('answers correctly signed but mutated events with 4xx', async () => {
    // A tenant without adapters: no mutation can become a real merge job.
    const t = await newTenant('fz');
    const event = {
      type: 'merge',
      tenant: t.id,
      merge: { base: 'stories260k', adapters: [{ id: 'a', weight: 1 }], method: 'linear', options: {}, output: 'adapter' },
    };
    const paths = [
      'type',
      'tenant',
      'merge',
      'merge.base',
      'merge.adapters',
      'merge.adapters.0',
      'merge.adapters.0.id',
      'merge.adapters.0.weight',
      'merge.method',
      'merge.options',
      'merge.options.density',
      'merge.options.blocksize',
      'merge.output',
      'extra',
    ];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...paths),
        fc.jsonValue({ maxDepth: 3 }),
        fc.integer({ min: 0, max: 2 }),
        async (path, value, mode) => {
          const mutated = setPath(event, path.split('.'), value);
          let body = JSON.stringify(mutated) ?? 'null';
          if (mode === 1) body = body.slice(0, Math.floor(body.length / 2));
          if (mode === 2) body = `${body}\u0000`;
          const res = await call('/webhooks/generic', await signedWebhook(body));
          expect(res.status, await res.clone().text()).toBeGreaterThanOrEqual(400);
          expect(res.status).toBeLessThan(500);
        },
      ),
      { numRuns: 80 },
    );
  });

  it('never lets a signature for one timestamp pass for another', async () => {
    const body = '{"type":"merge"}';
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 200 }), async (delta) => {
        const ts = Math.floor(Date.now() / 1000);
        const sig = await signWebhook(GENERIC_SECRET, ts, body);
        const res = await call('/webhooks/generic', await signedWebhook(body, { ts: ts - delta, signature: sig }));
        expect(res.status).toBe(401);
      }),
      { numRuns: 20 },
    );
  });
});

describe('fuzz: adapter uploads', () => {
  it('answers mutated PEFT files with 2xx or 4xx, and stores nothing on a refusal', async () => {
    const t = await newTenant('fz');
    const { config, weights } = FIXTURES['tiny-qv-r4'];
    const headerEnd = 8 + Number(new DataView(weights.buffer, weights.byteOffset).getBigUint64(0, true));
    const configObj = JSON.parse(config) as Record<string, unknown>;
    const fields = Object.keys(configObj);
    let n = 0;
    const mutation = fc.oneof(
      // Bytes flipped, mostly in the header (where the structure is).
      fc.record({
        kind: fc.constant('flip' as const),
        at: fc.array(fc.nat({ max: headerEnd + 64 }), { minLength: 1, maxLength: 6 }),
        xor: fc.integer({ min: 1, max: 255 }),
      }),
      fc.record({ kind: fc.constant('truncate' as const), len: fc.nat({ max: weights.byteLength }) }),
      fc.record({ kind: fc.constant('config' as const), field: fc.constantFrom(...fields), value: fc.jsonValue({ maxDepth: 2 }) }),
      fc.record({ kind: fc.constant('text' as const), text: fc.string({ maxLength: 60 }) }),
    );
    await fc.assert(
      fc.asyncProperty(mutation, async (m) => {
        let c = config;
        let w = weights;
        if (m.kind === 'flip') {
          w = weights.slice();
          for (const i of m.at) if (i < w.length) w[i] = (w[i] as number) ^ m.xor;
        } else if (m.kind === 'truncate') w = weights.slice(0, m.len);
        else if (m.kind === 'config') c = JSON.stringify({ ...configObj, [m.field]: m.value });
        else c = m.text;
        const name = `f${n++}`;
        const res = await call(
          `/v1/adapters/${name}`,
          auth(t.key, { method: 'PUT', body: form({ base: 'stories260k', 'adapter_config.json': c, 'adapter_model.safetensors': w }) }),
        );
        expect(res.status, await res.clone().text()).toBeLessThan(500);
        if (res.status >= 400) {
          expect(await listAll(env.BLOBS, `adapters/${t.id}/${name}/`)).toEqual([]);
          expect(await env.REGISTRY.get(`adapter/${t.id}/${name}`)).toBeNull();
        }
      }),
      { numRuns: 80 },
    );
  });
});
