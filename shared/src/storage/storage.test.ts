import { describe, expect, it } from 'vitest';
import { deleteArtifact, readArtifactManifest, writeArtifact } from './artifact.ts';
import { filesDigest, sha256Hex } from './digest.ts';
import { adapterKey, artifactKey, modelKey } from './keys.ts';
import { MemoryKeyValueStore, MemoryObjectStore } from './memory.ts';
import { listAll, type ObjectStore } from './store.ts';

const recipe = '1'.repeat(64);

describe('storage layout', () => {
  it('builds content-addressed keys and refuses unsafe segments', () => {
    const d = 'ab'.repeat(32);
    expect(modelKey(d, 'config.json')).toBe(`models/${d}/config.json`);
    expect(adapterKey('acme', 'qv', d, 'adapter_model.safetensors')).toBe(`adapters/acme/qv/${d}/adapter_model.safetensors`);
    expect(artifactKey(recipe, 'manifest.json')).toBe(`artifacts/${recipe}/manifest.json`);
    expect(() => adapterKey('acme', '../x', d, 'f')).toThrow(/storage key segment/);
    expect(() => adapterKey('acme', 'a/b', d, 'f')).toThrow();
    expect(() => modelKey('ABC', 'f')).toThrow(/digest/);
  });

  it('digests a file set by name and content', async () => {
    const a = await filesDigest({ 'x.json': '{}', 'y.bin': Uint8Array.of(1, 2) });
    expect(a.files['x.json']).toEqual({ size: 2, sha256: await sha256Hex('{}') });
    expect((await filesDigest({ 'y.bin': Uint8Array.of(1, 2), 'x.json': '{}' })).digest).toBe(a.digest);
    expect((await filesDigest({ 'x.json': '{ }', 'y.bin': Uint8Array.of(1, 2) })).digest).not.toBe(a.digest);
  });
});

describe('artifacts', () => {
  it('are invisible until the manifest, written last, exists', async () => {
    const order: string[] = [];
    const mem = new MemoryObjectStore();
    const store: ObjectStore = {
      put: (k, v, o) => {
        order.push(k);
        return mem.put(k, v, o);
      },
      get: (k) => mem.get(k),
      head: (k) => mem.head(k),
      list: (o) => mem.list(o),
      delete: (k) => mem.delete(k),
    };
    expect(await readArtifactManifest(store, recipe)).toBeNull();
    const m = await writeArtifact(
      store,
      recipe,
      'adapter',
      [
        { name: 'adapter_config.json', data: '{}' },
        { name: 'adapter_model.safetensors', data: Uint8Array.of(1, 2, 3) },
      ],
      { method: 'linear' },
    );
    expect(order.at(-1)).toBe(artifactKey(recipe, 'manifest.json'));
    expect(m.files.map((f) => f.size)).toEqual([2, 3]);
    expect(await readArtifactManifest(store, recipe)).toEqual(m);

    await deleteArtifact(store, recipe);
    expect(await readArtifactManifest(store, recipe)).toBeNull();
    expect(await listAll(store, `artifacts/${recipe}/`)).toEqual([]);
  });

  it('a crash before the manifest leaves nothing visible', async () => {
    const mem = new MemoryObjectStore();
    let puts = 0;
    const failing: ObjectStore = Object.assign(Object.create(mem), {
      put: (k: string, v: Uint8Array | string) => (++puts === 2 ? Promise.reject(new Error('crash')) : mem.put(k, v)),
    });
    await expect(
      writeArtifact(
        failing,
        recipe,
        'fused',
        [
          { name: 'a', data: 'x' },
          { name: 'b', data: 'y' },
        ],
        {},
      ),
    ).rejects.toThrow('crash');
    expect(await readArtifactManifest(mem, recipe)).toBeNull();
  });

  it('refuses a manifest that is not one', async () => {
    const mem = new MemoryObjectStore();
    await mem.put(artifactKey(recipe, 'manifest.json'), '{"format":"x"}');
    await expect(readArtifactManifest(mem, recipe)).rejects.toMatchObject({ code: 'storage_invalid' });
  });
});

describe('memory stores', () => {
  it('page through lists and expire keys', async () => {
    const mem = new MemoryObjectStore();
    for (let i = 0; i < 5; i++) await mem.put(`p/${i}`, 'x');
    const page = await mem.list({ prefix: 'p/', limit: 2 });
    expect(page.truncated).toBe(true);
    expect((await listAll(mem, 'p/')).map((o) => o.key)).toEqual(['p/0', 'p/1', 'p/2', 'p/3', 'p/4']);

    let t = 0;
    const kv = new MemoryKeyValueStore(() => t);
    await kv.put('a', '1', { expirationTtl: 60 });
    expect(await kv.get('a')).toBe('1');
    t = 60_000;
    expect(await kv.get('a')).toBeNull();
  });
});
