/**
 * Adapters from R2, parsed once per isolate. A mix becomes the feeds that put it on the model's
 * one session (stacked factors; merged weights for graphs that take them as inputs), or, merged
 * on a small model, a fused session of its own; both cached per model × mode × mix.
 */
import {
  type DeltaTerm,
  fitAdapterToModel,
  type LoraAdapter,
  LoraEdgeError,
  loadLoraAdapter,
  mixTerms,
  type Tensor,
  withPlace,
} from '@lora-edge/shared';
import { canFuse, type FusedSession, fusedSession, type LoadedModel, readBaseTensors } from './models.ts';
import { onnx } from './onnx.ts';
import { type AdapterRef, adapterKey, getBytes, getText } from './storage.ts';

export interface MixEntry {
  ref: AdapterRef;
  weight: number;
}

export type ServeMode = 'merged' | 'unmerged';

export interface PreparedMix {
  /** The session to run on: the model's own, or a fused one for a merged mix of a small model. */
  decoder: onnx.OnnxDecoder;
  exclusive<T>(fn: () => Promise<T>): Promise<T>;
  feeds: onnx.AdapterFeeds;
  /** The mode actually served: merged requests run stacked where the model gets no fused session. */
  served: ServeMode | 'base';
}

/** Fused sessions kept per isolate (each a full copy of a small model's weights). */
const FUSED_SESSIONS = 4;

/** Small LRU by count: adapters are a few MB at most at the edge. */
class Lru<V> {
  private readonly map = new Map<string, V>();
  constructor(
    private readonly max: number,
    private readonly onEvict?: (v: V) => void,
  ) {}
  get(k: string): V | undefined {
    const v = this.map.get(k);
    if (v !== undefined) {
      this.map.delete(k);
      this.map.set(k, v);
    }
    return v;
  }
  set(k: string, v: V): void {
    this.map.delete(k);
    this.map.set(k, v);
    while (this.map.size > this.max) {
      const oldest = this.map.keys().next().value as string;
      const v = this.map.get(oldest) as V;
      this.map.delete(oldest);
      this.onEvict?.(v);
    }
  }
  delete(k: string): void {
    this.map.delete(k);
  }
}

const adapterId = (r: AdapterRef) => `${r.tenant}/${r.name}@${r.digest}`;

export class AdapterCache {
  private readonly adapters = new Lru<Promise<LoraAdapter>>(32);
  private readonly mixes = new Lru<Promise<PreparedMix>>(16);
  private readonly fused = new Lru<Promise<FusedSession>>(FUSED_SESSIONS, (p) => {
    p.then((f) => f.exclusive(() => f.session.release())).catch(() => undefined);
  });

  adapter(bucket: R2Bucket, ref: AdapterRef): Promise<LoraAdapter> {
    const id = adapterId(ref);
    let p = this.adapters.get(id);
    if (!p) {
      p = (async () => {
        const configFile = adapterKey(ref, 'adapter_config.json');
        const weightsFile = adapterKey(ref, 'adapter_model.safetensors');
        const [configText, weights] = await Promise.all([getText(bucket, configFile), getBytes(bucket, weightsFile)]);
        return loadLoraAdapter({ configText, weights, configFile, weightsFile });
      })();
      this.adapters.set(id, p);
      p.catch(() => this.adapters.delete(id));
    }
    return p;
  }

  /**
   * Where and how `mix` runs on `model` (cached): an empty mix is the base model; a merged mix of
   * a small model gets a fused session of its own; anything else is fed to the model's session.
   */
  prepare(bucket: R2Bucket, model: LoadedModel, mix: readonly MixEntry[], mode: ServeMode, budgetBytes: number): Promise<PreparedMix> {
    if (mix.length === 0)
      return Promise.resolve({ decoder: model.decoder, exclusive: model.exclusive, feeds: onnx.BASE_FEEDS, served: 'base' });
    const key = `${model.ref.digest}|${mode}|${mix.map((m) => `${adapterId(m.ref)}*${m.weight}`).join(',')}`;
    if (mode === 'merged' && canFuse(model, budgetBytes, FUSED_SESSIONS)) return this.fusedMix(bucket, model, mix, key);
    let p = this.mixes.get(key);
    if (!p) {
      p = this.fedMix(bucket, model, mix, mode);
      this.mixes.set(key, p);
      p.catch(() => this.mixes.delete(key));
    }
    return p;
  }

  /** The mix's delta terms, each adapter checked against the model. */
  private async terms(bucket: R2Bucket, model: LoadedModel, mix: readonly MixEntry[]): Promise<Map<string, DeltaTerm[]>> {
    const adapters = await Promise.all(mix.map((m) => this.adapter(bucket, m.ref)));
    const entries = mix.map((m, i) => {
      const adapter = adapters[i] as LoraAdapter;
      const name = adapterId(m.ref);
      withPlace({ field: name }, () => fitAdapterToModel(adapter, model.config, adapterKey(m.ref, 'adapter_model.safetensors')));
      return { name, adapter, weight: m.weight };
    });
    return mixTerms(entries);
  }

  private async fusedMix(bucket: R2Bucket, model: LoadedModel, mix: readonly MixEntry[], key: string): Promise<PreparedMix> {
    let f = this.fused.get(key);
    if (!f) {
      f = this.terms(bucket, model, mix).then((t) => fusedSession(bucket, model, t));
      this.fused.set(key, f);
      f.catch(() => this.fused.delete(key));
    }
    const s = await f;
    return { decoder: s.decoder, exclusive: s.exclusive, feeds: onnx.BASE_FEEDS, served: 'merged' };
  }

  private async fedMix(bucket: R2Bucket, model: LoadedModel, mix: readonly MixEntry[], mode: ServeMode): Promise<PreparedMix> {
    const terms = await this.terms(bucket, model, mix);
    const merged = mode === 'merged' && model.graph.options.projectionWeights === 'input';
    // Base weights are read by range only where the math needs them: merged groups, DoRA row norms.
    const needed = new Set<string>();
    for (const [module, t] of terms) {
      const hit = onnx.findMember(model.graph.groups, module);
      if (!hit) continue;
      if (merged) for (const m of hit.group.members) needed.add(`${m.module}.weight`);
      else if (t.some((x) => x.magnitude)) needed.add(`${module}.weight`);
    }
    const tensors = await readBaseTensors(bucket, model, [...needed]);
    const base = (n: string): Tensor | undefined => tensors.get(n);
    if (!merged && !model.graph.options.lora) throw new LoraEdgeError('adapter_unsupported', 'this model is served without LoRA inputs');
    const feeds = merged ? onnx.mergedFeeds(model.graph, terms, base) : onnx.unmergedFeeds(model.graph, terms, base);
    model.decoder.checkAdapter(feeds);
    return { decoder: model.decoder, exclusive: model.exclusive, feeds, served: merged ? 'merged' : 'unmerged' };
  }
}
