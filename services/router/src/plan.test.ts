import { describe, expect, it } from 'vitest';
import { filesDigest } from './lib.ts';
import { listedFilesDigest, servedByHeader } from './plan.ts';

describe('plan helpers', () => {
  it('computes a fused model’s digest from its manifest as filesDigest does from the bytes', async () => {
    const files = { 'config.json': '{"a":1}', 'model.safetensors': new Uint8Array([1, 2, 3]) };
    const { digest, files: listed } = await filesDigest(files);
    const fromManifest = Object.entries(listed).map(([name, f]) => ({ name, sha256: f.sha256 }));
    expect(await listedFilesDigest(fromManifest.reverse())).toBe(digest);
  });

  it('writes the served-by header as key=value pairs', () => {
    expect(
      servedByHeader({
        model: 'm',
        adapters: [
          { id: 't/a', weight: 0.5 },
          { id: 't/b', weight: 0.5 },
        ],
        mode: 'merged',
        recipe: 'r'.repeat(64),
        selection: 'alias',
        alias: 'mix',
        target: 'edge',
      }),
    ).toBe(`model=m; mode=merged; adapters=t/a*0.5,t/b*0.5; recipe=${'r'.repeat(64)}; selection=alias; alias=mix`);
    expect(servedByHeader({ model: 'm', adapters: [], mode: 'base', recipe: null, selection: 'none', target: 'edge' })).toBe(
      'model=m; mode=base; selection=none',
    );
  });
});
