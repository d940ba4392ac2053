import { describe, expect, it } from 'vitest';
import { MemoryKeyValueStore } from '../storage/memory.ts';
import { pickAliasRoute, stickyUniform } from './aliases.ts';
import { parseApiKey } from './api-keys.ts';
import { parseAdapterRef, Registry, registryKeys } from './registry.ts';
import type { AdapterRecord } from './schemas.ts';

const now = () => new Date('2026-01-01T00:00:00Z');
const at = now().toISOString();

function adapter(tenant: string, name: string, visibility: 'private' | 'shared'): AdapterRecord {
  const f = { size: 1, sha256: 'f'.repeat(64) };
  return {
    id: `${tenant}/${name}`,
    tenant,
    name,
    visibility,
    base: 'stories260k',
    digest: 'a'.repeat(64),
    files: { config: f, weights: f },
    peft_type: 'LORA',
    use_dora: false,
    rank: 4,
    modules: 10,
    parameters: 100,
    examples: ['tell me a story'],
    source: { kind: 'upload' },
    created_at: at,
    updated_at: at,
  };
}

describe('registry', () => {
  it('stores API keys as hashes and authenticates them', async () => {
    const kv = new MemoryKeyValueStore();
    const reg = new Registry(kv, now);
    await reg.putTenant({ id: 'acme', name: 'Acme', created_at: at });
    const { key, record } = await reg.issueApiKey('acme', 'ci');
    expect(parseApiKey(key)?.id).toBe(record.id);
    const stored = (await kv.get(registryKeys.apiKey(record.id))) as string;
    expect(stored).not.toContain(key.slice(21));
    expect(JSON.parse(stored).hash).toMatch(/^[0-9a-f]{64}$/);

    expect((await reg.authenticate(key))?.tenant.id).toBe('acme');
    const forged = `${key.slice(0, -1)}${key.endsWith('A') ? 'B' : 'A'}`;
    expect(await reg.authenticate(forged)).toBeUndefined();
    expect(await reg.authenticate(`lek_0000000000000000_${'x'.repeat(43)}`)).toBeUndefined();
    expect(await reg.authenticate('Bearer nonsense')).toBeUndefined();

    await reg.revokeApiKey(record.id);
    expect(await reg.authenticate(key)).toBeUndefined();

    const second = await reg.issueApiKey('acme');
    await reg.putTenant({ id: 'acme', name: 'Acme', created_at: at, disabled: true });
    expect(await reg.authenticate(second.key)).toBeUndefined();
  });

  it('resolves adapter references by visibility', async () => {
    const reg = new Registry(new MemoryKeyValueStore(), now);
    await reg.putAdapter(adapter('acme', 'secret', 'private'));
    await reg.putAdapter(adapter('acme', 'public', 'shared'));
    expect((await reg.resolveAdapter('acme', 'secret'))?.id).toBe('acme/secret');
    expect((await reg.resolveAdapter('acme', 'acme/secret'))?.id).toBe('acme/secret');
    expect(await reg.resolveAdapter('other', 'acme/secret')).toBeUndefined();
    expect((await reg.resolveAdapter('other', 'acme/public'))?.id).toBe('acme/public');
    expect(await reg.resolveAdapter('other', 'public')).toBeUndefined();
    expect((await reg.listAdapters('acme')).map((a) => a.name)).toEqual(['public', 'secret']);
    expect(parseAdapterRef('a/b/c', 'acme')).toBeUndefined();
    expect(parseAdapterRef('../x', 'acme')).toBeUndefined();
    await expect(reg.putAdapter({ ...adapter('acme', 'x', 'private'), id: 'acme/y' })).rejects.toMatchObject({ code: 'registry_invalid' });
  });

  it('refuses corrupt records instead of passing them on', async () => {
    const kv = new MemoryKeyValueStore();
    const reg = new Registry(kv, now);
    await kv.put(registryKeys.tenant('bad'), '{not json');
    await expect(reg.getTenant('bad')).rejects.toMatchObject({ code: 'registry_invalid' });
    await kv.put(registryKeys.tenant('bad'), '{"id":"bad"}');
    await expect(reg.getTenant('bad')).rejects.toMatchObject({ code: 'registry_invalid' });
  });

  it('keeps base models, aliases, hit counters and Hub watches', async () => {
    const reg = new Registry(new MemoryKeyValueStore(), now);
    const f = { size: 10, sha256: 'e'.repeat(64) };
    await reg.putModel({
      id: 'org/tiny',
      digest: 'd'.repeat(64),
      config: { model_type: 'llama' },
      files: { config: f, weights: f },
      size: 10,
      edge_eligible: true,
      created_at: at,
    });
    expect((await reg.getModel('org/tiny'))?.digest).toBe('d'.repeat(64));

    const alias = await reg.putAlias({
      tenant: 'acme',
      name: 'support',
      routes: [
        { weight: 95, mix: [{ adapter: 'v1', weight: 1 }] },
        { weight: 5, mix: [{ adapter: 'v2', weight: 1 }] },
      ],
    });
    expect(alias.updated_at).toBe(at);
    expect(pickAliasRoute(alias, 0).mix[0]?.adapter).toBe('v1');
    expect(pickAliasRoute(alias, 0.9499).mix[0]?.adapter).toBe('v1');
    expect(pickAliasRoute(alias, 0.95).mix[0]?.adapter).toBe('v2');
    expect(pickAliasRoute(alias, 0.999999).mix[0]?.adapter).toBe('v2');
    // A sticky split sends about 5% of users to the canary.
    let canary = 0;
    for (let i = 0; i < 2000; i++) if (pickAliasRoute(alias, await stickyUniform(`user-${i}`)).mix[0]?.adapter === 'v2') canary++;
    expect(canary).toBeGreaterThan(60);
    expect(canary).toBeLessThan(140);
    expect(await stickyUniform('same')).toBe(await stickyUniform('same'));

    const r = 'c'.repeat(64);
    await reg.countHit(r);
    expect((await reg.countHit(r)).count).toBe(2);

    await reg.putWatch({ repo: 'org/adapter', tenant: 'acme', name: 'a' });
    await reg.putWatch({ repo: 'org/adapter', tenant: 'beta', name: 'b' });
    await reg.putWatch({ repo: 'org/adapter-2', tenant: 'acme', name: 'c' });
    expect((await reg.watchersOf('org/adapter')).map((w) => w.tenant)).toEqual(['acme', 'beta']);
    await reg.deleteWatch('org/adapter', 'acme', 'a');
    expect(await reg.watchersOf('org/adapter')).toHaveLength(1);
  });
});
