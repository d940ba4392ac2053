import { LoraEdgeError } from '../errors.ts';
import type { DecoderGraph } from './decoder-graph.ts';
import { type AdapterFeeds, BASE_FEEDS, defaultFeeds, type Feeds, type FeedTensor } from './feeds.ts';
import { kvNames } from './layout.ts';
import type { TensorSource } from './weights.ts';

/** An output as any onnxruntime binding returns it. */
export interface OutputTensor {
  readonly data: unknown;
  readonly dims: readonly number[];
}

/** One session run: the runtime (onnxruntime-web, -node...) wraps feeds in its tensor type. */
export type RunGraph = (feeds: Feeds) => Promise<Record<string, OutputTensor>>;

/** The KV cache of one sequence: the previous run's present tensors, fed back as the next past. */
export interface DecodeState {
  /** Tokens already in the cache. */
  length: number;
  past: Feeds;
  adapter: AdapterFeeds;
}

/**
 * Runs a decoder graph one chunk at a time (the whole prompt, then one token per step),
 * checking every input against the graph before onnxruntime sees it.
 */
export class OnnxDecoder {
  readonly maxPositions: number;
  /** Fed on every run unless the adapter feeds the same input (rank-0 factors, unit row scales, fed base weights). */
  readonly defaults: Feeds;
  private readonly inputs: Map<string, readonly (number | string)[]>;

  /** `base` is read once, only when the graph takes its projection weights as inputs. */
  constructor(
    readonly graph: DecoderGraph,
    private readonly run: RunGraph,
    base?: TensorSource,
  ) {
    this.maxPositions = graph.options.maxPositions;
    this.inputs = new Map(graph.model.graph.inputs.map((i) => [i.name, i.shape]));
    // Inputs baked into the model (bakeInputs) are no longer fed.
    this.defaults = Object.fromEntries(Object.entries(defaultFeeds(graph, base)).filter(([k]) => this.inputs.has(k)));
  }

  start(adapter: AdapterFeeds = BASE_FEEDS): DecodeState {
    this.checkAdapter(adapter);
    const c = this.graph.config;
    const past: Feeds = {};
    for (let l = 0; l < c.numLayers; l++) {
      const kv = kvNames(l);
      const empty: FeedTensor = { type: 'float32', data: new Float32Array(0), dims: [1, c.numKvHeads, 0, c.headDim] };
      past[kv.pastKey] = empty;
      past[kv.pastValue] = empty;
    }
    return { length: 0, past, adapter };
  }

  /** Feeds `ids` at positions state.length…; returns the logits of the last one and advances the cache. */
  async forward(state: DecodeState, ids: readonly number[]): Promise<Float32Array> {
    const c = this.graph.config;
    if (ids.length === 0) throw new LoraEdgeError('invalid_argument', 'no tokens to run', { field: 'input_ids' });
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) {
        throw new LoraEdgeError('invalid_argument', `token id ${id} is outside the vocabulary (0..${c.vocabSize - 1})`, {
          field: 'input_ids',
        });
      }
    }
    if (state.length + ids.length > this.maxPositions) {
      throw new LoraEdgeError('invalid_argument', `${state.length + ids.length} positions exceed the context of ${this.maxPositions}`, {
        field: 'input_ids',
      });
    }
    const n = ids.length;
    const feeds: Feeds = {
      ...this.defaults,
      ...state.adapter.feeds,
      ...state.past,
      input_ids: { type: 'int64', data: BigInt64Array.from(ids, (v) => BigInt(v)), dims: [1, n] },
      position_ids: { type: 'int64', data: BigInt64Array.from({ length: n }, (_, i) => BigInt(state.length + i)), dims: [1, n] },
    };
    const out = await this.run(feeds);
    const logits = out.logits;
    if (!logits || !(logits.data instanceof Float32Array)) throw new Error('the graph returned no float logits');
    const past: Feeds = {};
    for (let l = 0; l < c.numLayers; l++) {
      const kv = kvNames(l);
      past[kv.pastKey] = present(out, kv.presentKey);
      past[kv.pastValue] = present(out, kv.presentValue);
    }
    state.past = past;
    state.length += n;
    const v = c.vocabSize;
    return logits.data.length === v ? logits.data : logits.data.subarray(logits.data.length - v);
  }

  /** Refuses feeds whose names or shapes do not fit the graph (before they reach onnxruntime). */
  checkAdapter(adapter: AdapterFeeds): void {
    const sizes = new Map<string, number>();
    for (const [name, t] of Object.entries(adapter.feeds)) {
      const shape = this.inputs.get(name);
      if (!shape || !(name in this.defaults)) {
        throw new LoraEdgeError('invalid_argument', `"${name}" is not an adapter input of this graph`, { field: name });
      }
      const count = t.dims.reduce((a, b) => a * b, 1);
      if (t.dims.length !== shape.length || count !== t.data.length) {
        throw new LoraEdgeError('invalid_argument', `dims [${t.dims}] do not hold ${t.data.length} values or do not match [${shape}]`, {
          field: name,
        });
      }
      shape.forEach((d, i) => {
        const got = t.dims[i] as number;
        if (typeof d === 'number' && d !== got) {
          throw new LoraEdgeError('adapter_shape_mismatch', `dimension ${i} is ${got}, the graph needs ${d} (dims [${shape}])`, {
            field: name,
          });
        }
        if (typeof d === 'string') {
          const seen = sizes.get(d);
          if (seen !== undefined && seen !== got) {
            throw new LoraEdgeError('adapter_shape_mismatch', `${d} is ${got} here but ${seen} in a sibling input`, { field: name });
          }
          sizes.set(d, got);
        }
      });
      if (t.type === 'float32') {
        const bad = (t.data as Float32Array).findIndex((x) => !Number.isFinite(x));
        if (bad >= 0) throw new LoraEdgeError('non_finite_value', `value ${bad} is not finite`, { field: name });
      }
    }
    this.checkRanks(adapter.feeds);
  }

  /** Each family's ranks sum to its rows, and every group has the same rank in its A and Bᵀ families. */
  private checkRanks(fed: Feeds): void {
    const lora = this.graph.lora;
    if (!lora) return;
    const rankOf = new Map<string, number>();
    for (const fam of [...lora.a, ...lora.b]) {
      const t = fed[fam.input] ?? this.defaults[fam.input];
      const r = fed[fam.ranks] ?? this.defaults[fam.ranks];
      if (!t || !r) continue;
      if (!!fed[fam.input] !== !!fed[fam.ranks]) {
        throw new LoraEdgeError('adapter_shape_mismatch', `fed without ${fed[fam.input] ? fam.ranks : fam.input}`, { field: fam.input });
      }
      const ranks = Array.from(r.data as BigInt64Array, Number);
      if (ranks.some((x) => x < 0) || ranks.reduce((a, b) => a + b, 0) !== t.dims[0]) {
        throw new LoraEdgeError('adapter_shape_mismatch', `ranks [${ranks}] do not add up to the ${t.dims[0]} rows fed`, {
          field: fam.ranks,
        });
      }
      fam.groups.forEach((g, i) => {
        const seen = rankOf.get(g);
        if (seen !== undefined && seen !== ranks[i]) {
          throw new LoraEdgeError('adapter_shape_mismatch', `${g} has rank ${seen} in lora_A but ${ranks[i]} in lora_B`, {
            field: fam.input,
          });
        }
        rankOf.set(g, ranks[i] as number);
      });
    }
  }
}

function present(out: Record<string, OutputTensor>, name: string): FeedTensor {
  const t = out[name];
  if (!t || !(t.data instanceof Float32Array)) throw new Error(`the graph returned no ${name}`);
  return { type: 'float32', data: t.data, dims: [...t.dims] };
}

/** Greedy continuation (never stops early): the check against golden ids. */
export async function greedyIds(decoder: OnnxDecoder, prompt: readonly number[], n: number, adapter?: AdapterFeeds): Promise<number[]> {
  const state = decoder.start(adapter);
  let logits = await decoder.forward(state, prompt);
  const ids: number[] = [];
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < logits.length; j++) if ((logits[j] as number) > (logits[best] as number)) best = j;
    ids.push(best);
    if (i + 1 < n) logits = await decoder.forward(state, [best]);
  }
  return ids;
}
