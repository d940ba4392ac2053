import { describe, expect, it } from 'vitest';
import { RetrievalIndex, retrieveMix, weightsFromScores } from './retrieval.ts';
import { cosine, fnv1a, ngramCounts, normalizeText } from './similarity.ts';

const docs = [
  { id: 'demo/stories', examples: ['Once upon a time there was a little girl', 'Tell me a bedtime story about a dragon'] },
  { id: 'demo/sql', examples: ['Write a SQL query that joins orders and customers', 'SELECT the top 10 rows from the sales table'] },
  { id: 'demo/poems', examples: ['Write a short poem about the sea', 'A haiku about autumn leaves'] },
  { id: 'demo/silent', examples: [] },
];

describe('similarity', () => {
  it('normalizes case, width and whitespace', () => {
    expect(normalizeText('  Hello\n\tWORLD ')).toBe(' hello world ');
    expect(normalizeText('ｆｕｌｌ')).toBe(' full ');
  });

  it('hashes with FNV-1a (pinned: changing it reshuffles every index)', () => {
    expect(fnv1a('')).toBe(0x811c9dc5);
    expect(fnv1a('a')).toBe(0xe40c292c);
    expect(fnv1a('foobar')).toBe(0xbf9cf968);
  });

  it('gives 1 for the same text, 0 for nothing shared', () => {
    const a = ngramCounts('the cat sat');
    expect(cosine(a, ngramCounts('The  cat sat'))).toBeCloseTo(1, 12);
    expect(cosine(ngramCounts('xyzzy'), ngramCounts('qqqq'))).toBe(0);
    expect(cosine(new Map(), a)).toBe(0);
  });
});

describe('retrieval', () => {
  const index = new RetrievalIndex(docs);

  it('ranks the adapter whose examples resemble the prompt first', () => {
    expect(index.search('once upon a time, a dragon')[0]?.id).toBe('demo/stories');
    expect(index.search('select rows from the orders table with a sql join')[0]?.id).toBe('demo/sql');
    expect(index.search('a poem about autumn')[0]?.id).toBe('demo/poems');
  });

  it('is deterministic and total: the same prompt gives the same scores in the same order', () => {
    const a = new RetrievalIndex(docs).scores('tell me a story');
    const b = new RetrievalIndex([...docs].reverse()).scores('tell me a story');
    expect(a).toEqual(b);
    expect(a.map((h) => h.id)).not.toContain('demo/silent');
  });

  it('keeps the top k above the floor, and nothing when nothing is close', () => {
    expect(index.search('once upon a time', { topK: 1 })).toHaveLength(1);
    expect(index.search('zzzz qqqq', { minScore: 0.2 })).toEqual([]);
    expect(new RetrievalIndex([]).search('anything')).toEqual([]);
  });

  it('turns scores into weights on a grid that sums to exactly 1', () => {
    const w = weightsFromScores([
      { id: 'a', score: 0.5 },
      { id: 'b', score: 0.3 },
      { id: 'c', score: 0.2 },
    ]);
    expect(w).toEqual([
      { id: 'a', weight: 0.5 },
      { id: 'b', weight: 0.3 },
      { id: 'c', weight: 0.2 },
    ]);
    const thirds = weightsFromScores(
      [
        { id: 'a', score: 1 },
        { id: 'b', score: 1 },
        { id: 'c', score: 1 },
      ],
      20,
    );
    expect(thirds.reduce((s, x) => s + x.weight * 20, 0)).toBe(20);
    expect(thirds.map((x) => x.weight)).toEqual([0.35, 0.35, 0.3]);
    // A share under half a step disappears rather than becoming a zero-weight adapter.
    expect(
      weightsFromScores([
        { id: 'a', score: 1 },
        { id: 'b', score: 0.001 },
      ]).map((x) => x.id),
    ).toEqual(['a']);
    expect(weightsFromScores([])).toEqual([]);
  });

  it('gives near-identical prompts the same mix (hence the same recipe)', () => {
    const a = retrieveMix(index, 'Tell me a story about a dragon, please', { topK: 2, minScore: 0.05 });
    const b = retrieveMix(index, 'tell me a story about a dragon please!', { topK: 2, minScore: 0.05 });
    expect(a.map(({ id, weight }) => ({ id, weight }))).toEqual(b.map(({ id, weight }) => ({ id, weight })));
    expect(a[0]?.id).toBe('demo/stories');
  });
});
