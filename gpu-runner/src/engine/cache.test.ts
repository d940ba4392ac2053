import { describe, expect, it } from 'vitest';
import { LruCache } from './cache.ts';

function entry(bytes: number, released: string[], name: string) {
  return { bytes, release: () => released.push(name) };
}

describe('LruCache', () => {
  it('evicts the least recently used unpinned entries past the budget, releasing them', () => {
    const released: string[] = [];
    const c = new LruCache(100);
    c.acquire('a', () => entry(40, released, 'a'));
    c.unpin('a');
    c.acquire('b', () => entry(40, released, 'b'));
    c.unpin('b');
    c.acquire('a', () => entry(40, released, 'a2')); // hit: a becomes most recent
    c.unpin('a');
    c.acquire('c', () => entry(40, released, 'c'));
    expect(released).toEqual(['b']);
    expect(c.has('a') && c.has('c') && !c.has('b')).toBe(true);
    expect({ hits: c.hits, misses: c.misses, evictions: c.evictions, bytes: c.bytes }).toEqual({
      hits: 1,
      misses: 3,
      evictions: 1,
      bytes: 80,
    });
  });

  it('never evicts pinned entries, even over budget, and catches up on unpin', () => {
    const released: string[] = [];
    const c = new LruCache(50);
    c.acquire('a', () => entry(40, released, 'a'));
    c.acquire('b', () => entry(40, released, 'b'));
    expect(released).toEqual([]);
    expect(c.bytes).toBe(80);
    c.unpin('a');
    expect(released).toEqual(['a']);
    expect(c.bytes).toBe(40);
  });
});
