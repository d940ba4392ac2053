/**
 * A byte-budgeted LRU cache of backend resources (LoRA stacks, merged weight variants).
 * Entries pinned by running sequences are never evicted; eviction releases backend memory.
 */
export interface Cached {
  readonly bytes: number;
  release(): void;
}

interface Entry<T extends Cached> {
  value: T;
  pins: number;
}

export class LruCache<T extends Cached> {
  private readonly entries = new Map<string, Entry<T>>();
  private used = 0;
  hits = 0;
  misses = 0;
  evictions = 0;

  constructor(readonly budgetBytes: number) {}

  get bytes(): number {
    return this.used;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The cached value for `key`, building it on a miss; the result is pinned until `unpin`. */
  acquire(key: string, build: () => T): T {
    let e = this.entries.get(key);
    if (e) {
      this.hits++;
      this.entries.delete(key); // re-insert: most recently used last
    } else {
      this.misses++;
      e = { value: build(), pins: 0 };
      this.used += e.value.bytes;
    }
    e.pins++;
    this.entries.set(key, e);
    this.evict();
    return e.value;
  }

  unpin(key: string): void {
    const e = this.entries.get(key);
    if (e && e.pins > 0) e.pins--;
    this.evict();
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Drops least recently used unpinned entries until the budget holds. */
  private evict(): void {
    for (const [key, e] of this.entries) {
      if (this.used <= this.budgetBytes) return;
      if (e.pins > 0) continue;
      this.entries.delete(key);
      this.used -= e.value.bytes;
      this.evictions++;
      e.value.release();
    }
  }

  clear(): void {
    for (const e of this.entries.values()) e.value.release();
    this.entries.clear();
    this.used = 0;
  }
}
