/**
 * Text similarity without a model: hashed character n-grams weighted by TF-IDF, compared by
 * cosine. Deterministic (FNV-1a hashing, no randomness, no floating-point order dependence beyond
 * a fixed iteration order), cheap (one pass over the text), and good enough to tell a story prompt
 * from a SQL question, which is what adapter retrieval needs.
 */

export interface NgramOptions {
  /** Shortest and longest character n-gram, inclusive. */
  minN: number;
  maxN: number;
  /** Hash buckets (a power of two keeps the modulo a mask). */
  buckets: number;
}

export const DEFAULT_NGRAMS: NgramOptions = { minN: 3, maxN: 5, buckets: 1 << 18 };

/** A sparse vector: bucket → weight. */
export type SparseVector = Map<number, number>;

/** Lowercased, compatibility-normalized, whitespace collapsed, padded so word edges make n-grams of their own. */
export function normalizeText(text: string): string {
  return ` ${text.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').trim()} `;
}

/** 32-bit FNV-1a over UTF-16 code units: stable across runtimes. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Term counts of the hashed n-grams of `text`. */
export function ngramCounts(text: string, opts: NgramOptions = DEFAULT_NGRAMS): SparseVector {
  const t = normalizeText(text);
  const counts: SparseVector = new Map();
  const mask = opts.buckets - 1;
  for (let n = opts.minN; n <= opts.maxN; n++) {
    for (let i = 0; i + n <= t.length; i++) {
      // The length goes into the hash so "abc" as a 3-gram and inside a 4-gram stay apart.
      const b = fnv1a(`${n}:${t.slice(i, i + n)}`) & mask;
      counts.set(b, (counts.get(b) ?? 0) + 1);
    }
  }
  return counts;
}

export function cosine(a: SparseVector, b: SparseVector): number {
  const [small, large] = a.size <= b.size ? [a, b] : [b, a];
  let dot = 0;
  for (const [k, v] of small) {
    const w = large.get(k);
    if (w !== undefined) dot += v * w;
  }
  const na = norm(a);
  const nb = norm(b);
  return na === 0 || nb === 0 ? 0 : dot / (na * nb);
}

function norm(v: SparseVector): number {
  let s = 0;
  for (const x of v.values()) s += x * x;
  return Math.sqrt(s);
}

/**
 * TF-IDF over a fixed corpus: sublinear term frequency (1 + ln tf) and smoothed inverse document
 * frequency ln((1 + N) / (1 + df)) + 1, as scikit-learn's defaults, so n-grams every document
 * shares (" th", "the ") weigh little and distinctive ones dominate.
 */
export class TfIdf {
  private readonly df = new Map<number, number>();
  readonly size: number;

  constructor(
    docs: readonly SparseVector[],
    readonly opts: NgramOptions = DEFAULT_NGRAMS,
  ) {
    for (const d of docs) for (const k of d.keys()) this.df.set(k, (this.df.get(k) ?? 0) + 1);
    this.size = docs.length;
  }

  idf(bucket: number): number {
    return Math.log((1 + this.size) / (1 + (this.df.get(bucket) ?? 0))) + 1;
  }

  weigh(counts: SparseVector): SparseVector {
    const out: SparseVector = new Map();
    for (const [k, tf] of counts) out.set(k, (1 + Math.log(tf)) * this.idf(k));
    return out;
  }
}
