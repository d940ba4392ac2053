/**
 * Resident models and parsed adapters. A model is pulled through the blob cache into
 * `<cacheDir>/models/<digest>/`, loaded into the backend and wrapped in its own Engine; engines
 * stay resident in an LRU within a byte budget (a model in use is never evicted). Concurrent
 * requests for one digest share one load.
 */
import { readFileSync } from 'node:fs';
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  adapterPrefix,
  type LoraAdapter,
  loadLoraAdapter,
  MODEL_CONFIG_FILE,
  MODEL_WEIGHTS_FILE,
  modelPrefix,
} from '@lora-edge/shared';
import type { Backend } from '../backend/types.ts';
import { Engine, type EngineOptions } from '../engine/engine.ts';
import type { MixEntry } from '../engine/mix.ts';
import { loadRunnerModel, releaseModel } from '../engine/model.ts';
import { nf4Decoder } from '../engine/nf4.ts';
import { type ModelDir, modelSource, openModelDir } from '../io/files.ts';
import type { BlobCache } from './blobs.ts';
import { RunnerError } from './errors.ts';

export interface ModelLease {
  digest: string;
  engine: Engine;
  release(): void;
}

interface ModelEntry {
  digest: string;
  engine: Engine;
  dir: ModelDir;
  bytes: number;
  pins: number;
}

interface Loading {
  promise: Promise<ModelEntry>;
  /** Callers awaiting this load: each gets a pin the moment it lands, so nothing evicts it in between. */
  waiters: number;
}

export interface ModelStoreOptions {
  backend: Backend;
  cache: BlobCache;
  /** Resident weights bytes at most (least recently used unpinned models go first). */
  budgetBytes: number;
  /** The largest weights file this runner takes. */
  maxModelBytes: number;
  engine: EngineOptions;
}

export class ModelStore {
  /** Insertion order = least recently used first. */
  private readonly entries = new Map<string, ModelEntry>();
  private readonly loading = new Map<string, Loading>();

  constructor(readonly opts: ModelStoreOptions) {}

  get engines(): Engine[] {
    return [...this.entries.values()].map((e) => e.engine);
  }

  get residentBytes(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.bytes;
    return n;
  }

  has(digest: string): boolean {
    return this.entries.has(digest);
  }

  /** The engine of a resident model, if any (its config tells the KV cost of a request). */
  peek(digest: string): Engine | undefined {
    return this.entries.get(digest)?.engine;
  }

  async acquire(digest: string): Promise<ModelLease> {
    const hit = this.entries.get(digest);
    if (hit) {
      hit.pins++;
      this.entries.delete(digest);
      this.entries.set(digest, hit);
      return this.lease(hit);
    }
    let l = this.loading.get(digest);
    if (!l) {
      const loading: Loading = { waiters: 0, promise: Promise.resolve() as unknown as Promise<ModelEntry> };
      loading.promise = this.load(digest, loading).finally(() => this.loading.delete(digest));
      this.loading.set(digest, loading);
      l = loading;
    }
    l.waiters++;
    return this.lease(await l.promise);
  }

  private lease(e: ModelEntry): ModelLease {
    let released = false;
    return {
      digest: e.digest,
      engine: e.engine,
      release: () => {
        if (released) return;
        released = true;
        e.pins--;
        this.evict();
      },
    };
  }

  private async load(digest: string, l: Loading): Promise<ModelEntry> {
    const prefix = modelPrefix(digest);
    const weights = await this.opts.cache.file(prefix + MODEL_WEIGHTS_FILE);
    if (weights.size > this.opts.maxModelBytes)
      throw new RunnerError(
        'model_too_large',
        `model ${digest} has ${weights.size} weight bytes; this runner holds ${this.opts.maxModelBytes} at most`,
        true,
      );
    await this.opts.cache.files(prefix, [MODEL_CONFIG_FILE, MODEL_WEIGHTS_FILE], digest);
    this.evict(weights.size);
    const dir = openModelDir(this.opts.cache.pathOf(prefix.slice(0, -1)));
    try {
      const source = modelSource(dir);
      const model = loadRunnerModel(this.opts.backend, source, { decoders: [nf4Decoder] });
      const engine = new Engine(this.opts.backend, model, source, this.opts.engine);
      const entry: ModelEntry = { digest, engine, dir, bytes: model.ownedBytes, pins: l.waiters };
      this.entries.set(digest, entry);
      this.evict();
      return entry;
    } catch (e) {
      dir.close();
      throw e;
    }
  }

  /** Drops unpinned models, least recently used first, until `incoming` more bytes fit the budget. */
  private evict(incoming = 0): void {
    let used = this.residentBytes;
    for (const [digest, e] of this.entries) {
      if (used + incoming <= this.opts.budgetBytes) return;
      if (e.pins > 0) continue;
      this.entries.delete(digest);
      used -= e.bytes;
      this.drop(e);
    }
  }

  private drop(e: ModelEntry): void {
    e.engine.stacks.clear();
    e.engine.merged.clear();
    releaseModel(e.engine.model);
    e.dir.close();
  }

  close(): void {
    for (const e of this.entries.values()) this.drop(e);
    this.entries.clear();
  }
}

export interface AdapterRef {
  tenant: string;
  name: string;
  digest: string;
}

/** Parsed PEFT adapters by digest, fetched through the blob cache; a small byte-budgeted LRU. */
export class AdapterStore {
  private readonly entries = new Map<string, { adapter: LoraAdapter; bytes: number }>();
  private readonly loading = new Map<string, Promise<LoraAdapter>>();

  constructor(
    readonly cache: BlobCache,
    readonly budgetBytes: number,
  ) {}

  /** The request's mix in the engine's form; ids are digests (content), so equal adapters share LoRA stacks. */
  async mix(refs: readonly (AdapterRef & { weight: number })[]): Promise<MixEntry[]> {
    const adapters = await Promise.all(refs.map((r) => this.get(r)));
    return refs.map((r, i) => ({ id: r.digest, adapter: adapters[i] as LoraAdapter, weight: r.weight }));
  }

  get(ref: AdapterRef): Promise<LoraAdapter> {
    const hit = this.entries.get(ref.digest);
    if (hit) {
      this.entries.delete(ref.digest);
      this.entries.set(ref.digest, hit);
      return Promise.resolve(hit.adapter);
    }
    let p = this.loading.get(ref.digest);
    if (!p) {
      p = this.load(ref).finally(() => this.loading.delete(ref.digest));
      this.loading.set(ref.digest, p);
    }
    return p;
  }

  private async load(ref: AdapterRef): Promise<LoraAdapter> {
    const prefix = adapterPrefix(ref.tenant, ref.name, ref.digest);
    const files = await this.cache.files(prefix, [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE], ref.digest);
    const config = files[ADAPTER_CONFIG_FILE] as { path: string };
    const weights = files[ADAPTER_WEIGHTS_FILE] as { path: string; size: number };
    const b = readFileSync(weights.path);
    const adapter = loadLoraAdapter({
      configText: readFileSync(config.path, 'utf8'),
      weights: new Uint8Array(b.buffer, b.byteOffset, b.byteLength),
      configFile: prefix + ADAPTER_CONFIG_FILE,
      weightsFile: prefix + ADAPTER_WEIGHTS_FILE,
    });
    this.entries.set(ref.digest, { adapter, bytes: weights.size });
    let used = 0;
    for (const e of this.entries.values()) used += e.bytes;
    // Parsed adapters are plain memory: dropping the reference is the release (jobs hold their own).
    for (const [k, e] of this.entries) {
      if (used <= this.budgetBytes || k === ref.digest) break;
      this.entries.delete(k);
      used -= e.bytes;
    }
    return adapter;
  }
}
