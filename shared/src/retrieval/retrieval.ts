/**
 * Adapter retrieval: each adapter registers example prompts; a request's prompt is compared with
 * every example (TF-IDF cosine over hashed character n-grams), an adapter scores its best example,
 * and the top k adapters above a floor become a mix weighted by their scores.
 *
 * Weights are rounded to a grid (1/20 by default, summing exactly to 1): near-identical prompts
 * then name the same mix, hence the same recipe key, so a popular retrieved mix gets merged ahead
 * of time like any other.
 */
import { cosine, DEFAULT_NGRAMS, type NgramOptions, ngramCounts, type SparseVector, TfIdf } from './similarity.ts';

export interface RetrievalDoc {
  /** The adapter's id (what the mix names). */
  id: string;
  examples: readonly string[];
}

export interface RetrievalHit {
  id: string;
  /** Cosine similarity of the prompt with the adapter's closest example, in [0, 1]. */
  score: number;
}

export interface RetrievalOptions {
  /** How many adapters a mix may take. */
  topK: number;
  /** Adapters scoring below this are left out; none above it means no adapter. */
  minScore: number;
  /** Weights are multiples of 1 / weightSteps. */
  weightSteps: number;
}

export const DEFAULT_RETRIEVAL: RetrievalOptions = { topK: 2, minScore: 0.2, weightSteps: 20 };

export class RetrievalIndex {
  private readonly tfidf: TfIdf;
  private readonly vectors: { id: string; v: SparseVector }[] = [];

  constructor(
    docs: readonly RetrievalDoc[],
    private readonly opts: NgramOptions = DEFAULT_NGRAMS,
  ) {
    const counted = docs.flatMap((d) => d.examples.map((e) => ({ id: d.id, c: ngramCounts(e, opts) })));
    this.tfidf = new TfIdf(
      counted.map((x) => x.c),
      opts,
    );
    for (const x of counted) this.vectors.push({ id: x.id, v: this.tfidf.weigh(x.c) });
  }

  /** Every adapter with at least one example, by score (best first; ties by id, so the order is total). */
  scores(prompt: string): RetrievalHit[] {
    const q = this.tfidf.weigh(ngramCounts(prompt, this.opts));
    const best = new Map<string, number>();
    for (const { id, v } of this.vectors) {
      const s = cosine(q, v);
      if (s > (best.get(id) ?? -1)) best.set(id, s);
    }
    return [...best].map(([id, score]) => ({ id, score })).sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** The top k adapters above the floor; empty when nothing is close enough. */
  search(prompt: string, options: Partial<RetrievalOptions> = {}): RetrievalHit[] {
    const o = { ...DEFAULT_RETRIEVAL, ...options };
    return this.scores(prompt)
      .filter((h) => h.score >= o.minScore && h.score > 0)
      .slice(0, Math.max(0, o.topK));
  }
}

/**
 * Scores → mix weights proportional to them, on a grid of 1/steps that sums exactly to 1
 * (largest remainders get the leftover steps). An adapter whose share rounds to zero is dropped.
 */
export function weightsFromScores(hits: readonly RetrievalHit[], steps = DEFAULT_RETRIEVAL.weightSteps): { id: string; weight: number }[] {
  const total = hits.reduce((s, h) => s + h.score, 0);
  if (!(total > 0) || steps < 1) return [];
  const exact = hits.map((h) => (h.score / total) * steps);
  const units = exact.map(Math.floor);
  let left = steps - units.reduce((s, u) => s + u, 0);
  const order = exact.map((x, i) => ({ i, r: x - Math.floor(x) })).sort((a, b) => b.r - a.r || a.i - b.i);
  for (const { i } of order) {
    if (left <= 0) break;
    units[i] = (units[i] as number) + 1;
    left--;
  }
  return hits.flatMap((h, i) => ((units[i] as number) > 0 ? [{ id: h.id, weight: (units[i] as number) / steps }] : []));
}

/** Retrieval in one call: the weighted mix for `prompt`, possibly empty. */
export function retrieveMix(
  index: RetrievalIndex,
  prompt: string,
  options: Partial<RetrievalOptions> = {},
): { id: string; weight: number; score: number }[] {
  const hits = index.search(prompt, options);
  const weights = weightsFromScores(hits, options.weightSteps ?? DEFAULT_RETRIEVAL.weightSteps);
  return weights.map((w) => ({ ...w, score: (hits.find((h) => h.id === w.id) as RetrievalHit).score }));
}
