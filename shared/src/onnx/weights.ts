import { LoraEdgeError } from '../errors.ts';
import { linearShape } from '../model/weights.ts';
import { fromBnbTensors } from '../nf4/bnb.ts';
import { nf4BlockAbsmax } from '../nf4/dequantize.ts';
import { QUANT_STATE_SUFFIX } from '../nf4/quant-state.ts';
import { quantizeNf4 } from '../nf4/quantize.ts';
import { numel } from '../tensor/dtype.ts';
import { type Tensor, toFloat32 } from '../tensor/tensor.ts';
import type { DecoderGraph, WeightEntry } from './decoder-graph.ts';
import { type Q4Weight, quantizeQ4 } from './q4.ts';

/** Reads one checkpoint tensor by its Hugging Face name (from memory, a safetensors file, R2...). */
export type TensorSource = (name: string) => Tensor | undefined;

function expectedShape(graph: DecoderGraph, name: string): number[] | undefined {
  const c = graph.config;
  if (name === 'model.embed_tokens.weight' || name === 'lm_head.weight') return [c.vocabSize, c.hiddenSize];
  if (name.endsWith('layernorm.weight') || name === 'model.norm.weight') return [c.hiddenSize];
  const m = /^(.+)\.(weight|bias)$/.exec(name);
  const shape = m ? linearShape(c, m[1] as string) : undefined;
  if (!shape) return undefined;
  return m?.[2] === 'bias' ? [shape[0]] : shape;
}

function readF32(graph: DecoderGraph, get: TensorSource, name: string): Float32Array {
  const t = get(name);
  if (!t) throw new LoraEdgeError('model_weights_invalid', 'missing', { tensor: name });
  const want = expectedShape(graph, name);
  if (want && (t.shape.length !== want.length || numel(t.shape) !== numel(want) || t.shape.some((d, i) => d !== want[i]))) {
    throw new LoraEdgeError('model_weights_invalid', `shape [${t.shape}] but the config implies [${want}]`, { tensor: name });
  }
  return toFloat32(t);
}

/** Rows of several tensors, one after another (a packed projection group). */
function concatRows(graph: DecoderGraph, get: TensorSource, tensors: readonly string[]): Float32Array {
  if (tensors.length === 1) return readF32(graph, get, tensors[0] as string);
  const parts = tensors.map((n) => readF32(graph, get, n));
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function bytes(a: Float32Array | Uint8Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** NF4 codes and float absmax of one group: each member read as bitsandbytes stored it, or quantized here. */
function nf4Group(
  graph: DecoderGraph,
  get: TensorSource,
  tensors: readonly string[],
  blockSize: number,
): { codes: Uint8Array; absmax: Float32Array } {
  const parts = tensors.map((name) => {
    if (get(`${name}.${QUANT_STATE_SUFFIX}`)) {
      const q = fromBnbTensors(get, name);
      const want = expectedShape(graph, name);
      if (want && q.shape.join() !== want.join())
        throw new LoraEdgeError('model_weights_invalid', `NF4 shape [${q.shape}] but the config implies [${want}]`, { tensor: name });
      if (q.blocksize !== blockSize)
        throw new LoraEdgeError('model_weights_invalid', `NF4 block size ${q.blocksize}, the graph was built for ${blockSize}`, {
          tensor: name,
        });
      return { codes: q.packed, absmax: nf4BlockAbsmax(q), n: q.packed.length * 2 };
    }
    const w = readF32(graph, get, name);
    const q = quantizeNf4(w, { blocksize: blockSize, name });
    if (q.doubleQuant) throw new Error('unreachable');
    return { codes: q.packed, absmax: q.absmax, n: w.length };
  });
  // Members are concatenated block-wise: each must fill whole blocks (true when in_features % blockSize == 0).
  if (parts.length > 1 && parts.some((p) => p.n % blockSize)) {
    throw new LoraEdgeError('config_unsupported', `NF4 groups need in_features to be a multiple of the block size ${blockSize}`, {
      tensor: tensors[0],
    });
  }
  const codes = new Uint8Array(parts.reduce((s, p) => s + p.codes.length, 0));
  const absmax = new Float32Array(parts.reduce((s, p) => s + p.absmax.length, 0));
  let c = 0;
  let a = 0;
  for (const p of parts) {
    codes.set(p.codes, c);
    absmax.set(p.absmax, a);
    c += p.codes.length;
    a += p.absmax.length;
  }
  return { codes, absmax };
}

/**
 * Makes the external-data file of a decoder graph from checkpoint tensors: float32 conversion,
 * group packing, 4-bit quantization. Writes into `out` when given (e.g. a buffer sized by
 * `graph.weights.byteLength` that the caller reuses).
 */
export function buildWeightData(graph: DecoderGraph, get: TensorSource, out = new Uint8Array(graph.weights.byteLength)): Uint8Array {
  if (out.byteLength < graph.weights.byteLength) throw new RangeError(`buffer of ${out.byteLength} bytes < ${graph.weights.byteLength}`);
  const cache = new Map<string, unknown>();
  for (const e of graph.weights.entries) out.set(entryBytes(graph, get, e, cache), e.offset);
  return out;
}

/** The bytes of one initializer (also how a merged group is re-made to feed it). */
export function entryBytes(graph: DecoderGraph, get: TensorSource, e: WeightEntry, cache = new Map<string, unknown>()): Uint8Array {
  const r = e.recipe;
  let b: Uint8Array;
  if (r.kind === 'f32') {
    b = bytes(concatRows(graph, get, r.tensors));
  } else if (r.kind === 'nf4') {
    const key = `nf4:${r.tensors.join('|')}`;
    let q = cache.get(key) as ReturnType<typeof nf4Group> | undefined;
    if (!q) {
      q = nf4Group(graph, get, r.tensors, r.blockSize);
      cache.set(key, q);
    }
    b = r.part === 'codes' ? q.codes : bytes(q.absmax);
  } else {
    const key = `q4:${r.tensors.join('|')}`;
    let q = cache.get(key) as Q4Weight | undefined;
    if (!q) {
      q = quantizeQ4(concatRows(graph, get, r.tensors), r.rows, r.cols, r.blockSize);
      cache.set(key, q);
    }
    b = r.part === 'codes' ? q.codes : r.part === 'scales' ? bytes(q.scales) : q.zeroPoints;
  }
  if (b.byteLength !== e.byteLength) {
    throw new LoraEdgeError('model_weights_invalid', `${b.byteLength} bytes where the graph expects ${e.byteLength}`, { tensor: e.name });
  }
  return b;
}

/** Where a checkpoint tensor lies in its safetensors file (the parsed header gives this). */
export interface TensorLocation {
  name: string;
  dtype: Tensor['dtype'];
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

/**
 * Builds the external-data file from a safetensors file read front to back in chunks (an R2
 * body stream): each tensor is kept only from its first byte until every weight that needs it
 * is written, so memory holds the output plus a group's worth of tensors, never the whole file.
 */
export class WeightAssembler {
  readonly out: Uint8Array;
  private readonly pending: WeightEntry[];
  private readonly wanted: TensorLocation[];
  private readonly buffers = new Map<string, Uint8Array>();
  private readonly complete = new Set<string>();
  private readonly cache = new Map<string, unknown>();
  private offset = 0;

  constructor(
    private readonly graph: DecoderGraph,
    tensors: readonly TensorLocation[],
  ) {
    this.out = new Uint8Array(graph.weights.byteLength);
    this.pending = [...graph.weights.entries];
    const roots = new Set(this.pending.flatMap((e) => e.recipe.tensors));
    // A tensor and its companions (NF4's .absmax, .quant_state…) by name prefix.
    const needed = (n: string) => roots.has(n) || [...roots].some((r) => n.startsWith(`${r}.`));
    this.wanted = tensors.filter((t) => needed(t.name)).sort((a, b) => a.begin - b.begin);
  }

  /** The next bytes of the file, in order. */
  push(chunk: Uint8Array): void {
    const start = this.offset;
    const end = start + chunk.byteLength;
    for (const t of this.wanted) {
      if (t.end <= start || t.begin >= end || this.complete.has(t.name)) continue;
      let buf = this.buffers.get(t.name);
      if (!buf) {
        buf = new Uint8Array(t.end - t.begin);
        this.buffers.set(t.name, buf);
      }
      const from = Math.max(t.begin, start);
      const to = Math.min(t.end, end);
      buf.set(chunk.subarray(from - start, to - start), from - t.begin);
      if (to === t.end) this.complete.add(t.name);
    }
    this.offset = end;
    this.flush();
  }

  /** The external-data file; throws if a weight's tensors never arrived. */
  finish(): Uint8Array {
    this.flush();
    if (this.pending.length) {
      const e = this.pending[0] as WeightEntry;
      const missing = e.recipe.tensors.find((n) => !this.complete.has(n)) ?? e.recipe.tensors[0];
      throw new LoraEdgeError('model_weights_invalid', `missing or truncated (the file ended at byte ${this.offset})`, { tensor: missing });
    }
    return this.out;
  }

  private source = (name: string): Tensor | undefined => {
    const t = this.wanted.find((w) => w.name === name);
    const data = t && this.complete.has(name) ? this.buffers.get(name) : undefined;
    return t && data ? { dtype: t.dtype, shape: [...t.shape], data } : undefined;
  };

  private flush(): void {
    const ready = (n: string) => this.complete.has(n) || !this.wanted.some((w) => w.name === n);
    for (let i = 0; i < this.pending.length; ) {
      const e = this.pending[i] as WeightEntry;
      const companionsDone = this.wanted.every(
        (w) => !e.recipe.tensors.some((r) => w.name.startsWith(`${r}.`)) || this.complete.has(w.name),
      );
      if (!e.recipe.tensors.every(ready) || !companionsDone) {
        i++;
        continue;
      }
      this.out.set(entryBytes(this.graph, this.source, e, this.cache), e.offset);
      this.pending.splice(i, 1);
    }
    // Drop tensors (and quantization results) no pending weight still needs.
    const still = new Set(this.pending.flatMap((e) => e.recipe.tensors));
    for (const name of [...this.buffers.keys()]) {
      if (this.complete.has(name) && ![...still].some((r) => name === r || name.startsWith(`${r}.`))) this.buffers.delete(name);
    }
    for (const key of [...this.cache.keys()]) if (![...still].some((r) => key.includes(r))) this.cache.delete(key);
  }
}
