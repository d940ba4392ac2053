import { assertMixWeights, fitAdapterToModel, LoraEdgeError, mixTerms, PROJECTIONS, type Projection } from '@lora-edge/shared';
import type { Backend, LoraHandle, WeightHandle } from '../backend/types.ts';
import { LruCache } from './cache.ts';
import { buildStacks, type LoraStacks, type MixEntry, mixKey } from './mix.ts';
import { mergedVariant, type RunnerModel, releaseModel, type TensorSource } from './model.ts';
import { Rng, type SamplingParams, sample, validateSampling } from './sampling.ts';
import { AsyncQueue } from './stream.ts';

export interface GenerateRequest {
  prompt: readonly number[];
  maxTokens: number;
  /** Adapters and weights; empty or absent = the base model. */
  mix?: readonly MixEntry[];
  /** unmerged (default): base weights + LoRA kernels; merged: a fused copy of the touched weights, cached per mix. */
  mode?: 'merged' | 'unmerged';
  sampling?: SamplingParams;
  /** Stop ids; default the model's EOS ids unless ignoreEos. */
  stopIds?: readonly number[];
  ignoreEos?: boolean;
  /** Also return the logits at the last prompt position (the first sampling step). */
  returnFirstLogits?: boolean;
  /**
   * Tokens an earlier run of this same request already produced (a retry after a lost runner):
   * they are prefilled after the prompt, count against maxTokens, advance the seeded random
   * stream as their sampling did, and the new tokens continue at index resumeIds.length. The
   * Completion's ids include them, so a resumed run ends with the same ids as an uninterrupted one.
   */
  resumeIds?: readonly number[];
}

export interface TokenEvent {
  token: number;
  index: number;
}

export interface Completion {
  ids: number[];
  finishReason: 'length' | 'stop';
  promptTokens: number;
  firstLogits?: Float32Array;
}

export interface RequestHandle {
  tokens: AsyncIterable<TokenEvent>;
  result: Promise<Completion>;
  cancel(): void;
}

export interface EngineOptions {
  /** Sequences decoded together at most. */
  maxBatch?: number;
  /** KV cache budget in bytes across running sequences. */
  kvBudgetBytes?: number;
  /** Budget for LoRA stacks (unmerged mixes). */
  adapterBudgetBytes?: number;
  /** Budget for merged weight variants. */
  mergedBudgetBytes?: number;
  /**
   * Storage of LoRA factors in the backend. f32 (default) reproduces the references exactly;
   * bf16 halves the bytes a mixed-adapter decode step reads, at bf16 rounding of the factors.
   */
  loraFactorDtype?: 'f32' | 'bf16';
  /**
   * Paces the loop: a step takes at least this long (0 = off). For load and fault tests on tiny
   * models, and for sharing a host fairly; never on by default.
   */
  minStepMs?: number;
}

interface MergedEntry {
  model: RunnerModel;
  bytes: number;
  release(): void;
}

class Sequence {
  readonly generated: number[] = [];
  readonly k: Float32Array[];
  readonly v: Float32Array[];
  /** Tokens already in the KV cache. */
  cached = 0;
  done = false;
  readonly queue = new AsyncQueue<TokenEvent>();
  resolve!: (c: Completion) => void;
  reject!: (e: unknown) => void;
  readonly result: Promise<Completion>;
  readonly rng: Rng;
  firstLogits: Float32Array | undefined;

  constructor(
    readonly req: GenerateRequest,
    readonly capacity: number,
    kvDim: number,
    layers: number,
    readonly stops: Set<number>,
    readonly model: RunnerModel,
    readonly stacks: LoraStacks | undefined,
    readonly cacheKeys: { stacks?: string; merged?: string },
  ) {
    this.k = Array.from({ length: layers }, () => new Float32Array(capacity * kvDim));
    this.v = Array.from({ length: layers }, () => new Float32Array(capacity * kvDim));
    this.result = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.result.catch(() => {}); // a reader may only follow the stream
    this.rng = new Rng(req.sampling?.seed ?? 0);
    const resumed = req.resumeIds ?? [];
    this.generated.push(...resumed);
    // sample() draws once per token when temperature > 0: replay those draws so the stream continues.
    if ((req.sampling?.temperature ?? 0) > 0) for (let i = 0; i < resumed.length; i++) this.rng.next();
  }

  get kvBytes(): number {
    return this.k.reduce((s, a) => s + a.byteLength * 2, 0);
  }

  /** Tokens to run this step: the whole prompt (and resumed ids) first, then the last sampled token. */
  pending(): readonly number[] {
    if (this.cached === 0) return this.generated.length ? [...this.req.prompt, ...this.generated] : this.req.prompt;
    return [this.generated[this.generated.length - 1] as number];
  }
}

/**
 * Continuous batching over one base model: requests join and leave between decode steps; each
 * step runs the prefill of new sequences and one decode token of running ones in one batch,
 * with per-row LoRA slots so sequences on different adapters (or mixes) share every base matmul.
 */
export class Engine {
  readonly stacks: LruCache<LoraStacks>;
  readonly merged: LruCache<MergedEntry>;
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private loop: Promise<void> | undefined;
  private readonly maxBatch: number;
  private readonly kvBudget: number;
  private readonly loraFactorDtype: 'f32' | 'bf16';
  private readonly minStepMs: number;
  steps = 0;

  constructor(
    readonly backend: Backend,
    readonly model: RunnerModel,
    readonly source: TensorSource,
    opts: EngineOptions = {},
  ) {
    this.maxBatch = opts.maxBatch ?? 64;
    this.minStepMs = opts.minStepMs ?? 0;
    this.kvBudget = opts.kvBudgetBytes ?? 2 ** 30;
    this.loraFactorDtype = opts.loraFactorDtype ?? 'f32';
    this.stacks = new LruCache(opts.adapterBudgetBytes ?? 512 * 2 ** 20);
    this.merged = new LruCache(opts.mergedBudgetBytes ?? 2 ** 30);
  }

  /** Validates and queues a request; tokens stream out as they are sampled. */
  submit(req: GenerateRequest): RequestHandle {
    const c = this.model.config;
    const bad = (msg: string, field: string) => new LoraEdgeError('invalid_argument', msg, { field });
    if (req.prompt.length === 0) throw bad('the prompt is empty', 'prompt');
    for (const t of req.prompt)
      if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize)
        throw bad(`token id ${t} is outside the vocabulary (0..${c.vocabSize - 1})`, 'prompt');
    if (!Number.isInteger(req.maxTokens) || req.maxTokens <= 0)
      throw bad(`max tokens must be a positive integer, got ${req.maxTokens}`, 'max_tokens');
    if (req.prompt.length + req.maxTokens > c.maxPositions) {
      throw bad(`prompt (${req.prompt.length}) + max tokens (${req.maxTokens}) exceed the context of ${c.maxPositions}`, 'max_tokens');
    }
    const resume = req.resumeIds ?? [];
    for (const t of resume)
      if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize)
        throw bad(`resumed token id ${t} is outside the vocabulary (0..${c.vocabSize - 1})`, 'resume_ids');
    if (resume.length > req.maxTokens) throw bad(`${resume.length} resumed tokens exceed max tokens (${req.maxTokens})`, 'resume_ids');
    validateSampling(req.sampling ?? {});
    const mix = req.mix ?? [];
    let model = this.model;
    let stacks: LoraStacks | undefined;
    const keys: { stacks?: string; merged?: string } = {};
    if (mix.length > 0) {
      for (const m of mix) fitAdapterToModel(m.adapter, c, m.id);
      assertMixWeights(mix.map((m) => ({ name: m.id, weight: m.weight })));
      const key = mixKey(mix);
      if (req.mode === 'merged') {
        keys.merged = key;
        model = this.merged.acquire(key, () => {
          const terms = mixTerms(mix.map((m) => ({ name: m.id, adapter: m.adapter, weight: m.weight })));
          const variant = mergedVariant(this.model, this.source, terms);
          return { model: variant, bytes: variant.ownedBytes, release: () => releaseModel(variant, this.model) };
        }).model;
      } else {
        keys.stacks = key;
        stacks = this.stacks.acquire(key, () => buildStacks(this.backend, this.model, this.source, mix, this.loraFactorDtype));
      }
    }
    const stops = new Set(req.ignoreEos ? (req.stopIds ?? []) : (req.stopIds ?? c.eosTokenIds));
    const seq = new Sequence(req, req.prompt.length + req.maxTokens, c.numKvHeads * c.headDim, c.numLayers, stops, model, stacks, keys);
    // A resumed run that had already ended (stop id last, or the budget spent) ends here.
    const last = resume[resume.length - 1];
    if (last !== undefined && stops.has(last)) this.finish(seq, 'stop');
    else if (resume.length >= req.maxTokens) this.finish(seq, 'length');
    else {
      this.waiting.push(seq);
      this.kick();
    }
    return {
      tokens: seq.queue,
      result: seq.result,
      cancel: () => this.finish(seq, 'stop'),
    };
  }

  async generate(req: GenerateRequest): Promise<Completion> {
    return this.submit(req).result;
  }

  get load(): { running: number; waiting: number; kvBytes: number } {
    return { running: this.running.length, waiting: this.waiting.length, kvBytes: this.kvBytesInUse() };
  }

  private kvBytesInUse(): number {
    return this.running.reduce((s, q) => s + q.kvBytes, 0);
  }

  private kick(): void {
    this.loop ??= this.run().finally(() => {
      this.loop = undefined;
      if (this.waiting.length || this.running.length) this.kick();
    });
  }

  private async run(): Promise<void> {
    while (this.waiting.length || this.running.length) {
      this.admit();
      if (this.running.length === 0) return;
      const t0 = performance.now();
      try {
        this.step();
      } catch (e) {
        for (const s of [...this.running]) this.fail(s, e);
      }
      // Let new requests and readers in between steps (and wait out the pacing, if any).
      const rest = this.minStepMs - (performance.now() - t0);
      await new Promise((r) => (rest > 0 ? setTimeout(r, rest) : setImmediate(r)));
    }
  }

  /** Moves waiting sequences in while the batch and the KV budget allow (one at least, so nothing starves). */
  private admit(): void {
    let used = this.kvBytesInUse();
    while (this.waiting.length && this.running.length < this.maxBatch) {
      const next = this.waiting[0] as Sequence;
      if (next.done) {
        this.waiting.shift();
        continue;
      }
      if (this.running.length > 0 && used + next.kvBytes > this.kvBudget) break;
      this.waiting.shift();
      this.running.push(next);
      used += next.kvBytes;
    }
  }

  private finish(seq: Sequence, reason: Completion['finishReason']): void {
    if (seq.done) return;
    seq.done = true;
    this.release(seq);
    seq.queue.close();
    const c: Completion = { ids: [...seq.generated], finishReason: reason, promptTokens: seq.req.prompt.length };
    if (seq.firstLogits) c.firstLogits = seq.firstLogits;
    seq.resolve(c);
  }

  private fail(seq: Sequence, e: unknown): void {
    if (seq.done) return;
    seq.done = true;
    this.release(seq);
    seq.queue.close(e);
    seq.reject(e);
  }

  private release(seq: Sequence): void {
    const i = this.running.indexOf(seq);
    if (i >= 0) this.running.splice(i, 1);
    if (seq.cacheKeys.stacks) this.stacks.unpin(seq.cacheKeys.stacks);
    if (seq.cacheKeys.merged) this.merged.unpin(seq.cacheKeys.merged);
  }

  /** One batched forward over every running sequence, then one sampled token each. */
  step(): void {
    const seqs = [...this.running];
    // Rows of the same weight set run through one matmul: keep them adjacent.
    const modelIds = new Map<RunnerModel, number>();
    for (const s of seqs) if (!modelIds.has(s.model)) modelIds.set(s.model, modelIds.size);
    seqs.sort((a, b) => (modelIds.get(a.model) as number) - (modelIds.get(b.model) as number));
    const logits = this.forward(seqs);
    const vocab = this.model.config.vocabSize;
    this.steps++;
    seqs.forEach((s, i) => {
      s.cached += s.pending().length;
      const row = logits.subarray(i * vocab, (i + 1) * vocab);
      if (s.req.returnFirstLogits && s.generated.length === (s.req.resumeIds?.length ?? 0)) s.firstLogits = row.slice();
      const token = sample(row, s.req.sampling ?? {}, s.rng);
      s.generated.push(token);
      s.queue.push({ token, index: s.generated.length - 1 });
      if (s.stops.has(token)) this.finish(s, 'stop');
      else if (s.generated.length >= s.req.maxTokens) this.finish(s, 'length');
    });
  }

  private forward(seqs: Sequence[]): Float32Array {
    const c = this.model.config;
    const be = this.backend;
    const h = c.hiddenSize;
    const hd = c.headDim;
    const qDim = c.numHeads * hd;
    const kvDim = c.numKvHeads * hd;
    const inter = c.intermediateSize;

    const starts: number[] = [];
    let n = 0;
    for (const s of seqs) {
      starts.push(n);
      n += s.pending().length;
    }
    const x = new Float32Array(n * h);
    const positions = new Int32Array(n);
    seqs.forEach((s, si) => {
      s.pending().forEach((t, j) => {
        const row = (starts[si] as number) + j;
        x.set(this.model.embed.subarray(t * h, (t + 1) * h), row * h);
        positions[row] = s.cached + j;
      });
    });
    // Weight groups: [model, firstRow, rowCount].
    const groups: { model: RunnerModel; row: number; rows: number }[] = [];
    seqs.forEach((s, si) => {
      const rows = s.pending().length;
      const last = groups[groups.length - 1];
      if (last && last.model === s.model) last.rows += rows;
      else groups.push({ model: s.model, row: starts[si] as number, rows });
    });
    // LoRA: the distinct stacks of this batch, and each row's slot among them.
    const stackList: LoraStacks[] = [];
    const rowStack = new Int32Array(n).fill(-1);
    seqs.forEach((s, si) => {
      if (!s.stacks) return;
      let idx = stackList.indexOf(s.stacks);
      if (idx < 0) idx = stackList.push(s.stacks) - 1;
      rowStack.fill(idx, starts[si] as number, (starts[si] as number) + s.pending().length);
    });
    const slots = new Int32Array(n);

    const xn = new Float32Array(n * h);
    const q = new Float32Array(n * qDim);
    const k = new Float32Array(n * kvDim);
    const v = new Float32Array(n * kvDim);
    const att = new Float32Array(n * qDim);
    const o = new Float32Array(n * h);
    const gate = new Float32Array(n * inter);
    const up = new Float32Array(n * inter);

    const project = (l: number, p: Projection, y: Float32Array, input: Float32Array, outDim: number, inDim: number) => {
      for (const g of groups) {
        be.matmul(
          y.subarray(g.row * outDim, (g.row + g.rows) * outDim),
          input.subarray(g.row * inDim, (g.row + g.rows) * inDim),
          g.rows,
          g.model.layers[l]?.proj[p] as WeightHandle,
        );
      }
      if (stackList.length) {
        const pi = l * PROJECTIONS.length + PROJECTIONS.indexOf(p);
        const handles: LoraHandle[] = [];
        const handleOf = stackList.map((st) => {
          const hnd = st.handles[pi];
          return hnd ? handles.push(hnd) - 1 : -1;
        });
        if (handles.length) {
          for (let i = 0; i < n; i++) slots[i] = rowStack[i] === -1 ? -1 : (handleOf[rowStack[i] as number] as number);
          be.lora(y, input, n, slots, handles);
        }
      }
      const bias = this.model.layers[l]?.bias[p];
      if (bias)
        for (let i = 0; i < n; i++)
          for (let j = 0; j < outDim; j++) y[i * outDim + j] = (y[i * outDim + j] as number) + (bias[j] as number);
    };

    for (let l = 0; l < c.numLayers; l++) {
      const layer = this.model.layers[l]!;
      be.rmsnorm(xn, x, n, h, layer.inputNorm, c.rmsNormEps);
      project(l, 'q_proj', q, xn, qDim, h);
      project(l, 'k_proj', k, xn, kvDim, h);
      project(l, 'v_proj', v, xn, kvDim, h);
      be.rope(q, n, c.numHeads, hd, positions, c.ropeTheta);
      be.rope(k, n, c.numKvHeads, hd, positions, c.ropeTheta);
      seqs.forEach((s, si) => {
        const row = starts[si] as number;
        const count = s.pending().length;
        s.k[l]!.set(k.subarray(row * kvDim, (row + count) * kvDim), s.cached * kvDim);
        s.v[l]!.set(v.subarray(row * kvDim, (row + count) * kvDim), s.cached * kvDim);
        be.attention({
          out: att.subarray(row * qDim, (row + count) * qDim),
          q: q.subarray(row * qDim, (row + count) * qDim),
          nTokens: count,
          kCache: s.k[l]!,
          vCache: s.v[l]!,
          start: s.cached,
          heads: c.numHeads,
          kvHeads: c.numKvHeads,
          headDim: hd,
        });
      });
      project(l, 'o_proj', o, att, h, qDim);
      for (let i = 0; i < x.length; i++) x[i] = (x[i] as number) + (o[i] as number);
      be.rmsnorm(xn, x, n, h, layer.postNorm, c.rmsNormEps);
      project(l, 'gate_proj', gate, xn, inter, h);
      project(l, 'up_proj', up, xn, inter, h);
      be.siluMul(gate, up, n * inter);
      project(l, 'down_proj', o, gate, h, inter);
      for (let i = 0; i < x.length; i++) x[i] = (x[i] as number) + (o[i] as number);
    }
    // Logits only for each sequence's last row.
    const last = new Float32Array(seqs.length * h);
    seqs.forEach((s, si) => {
      const row = (starts[si] as number) + s.pending().length - 1;
      last.set(x.subarray(row * h, (row + 1) * h), si * h);
    });
    be.rmsnorm(last, last, seqs.length, h, this.model.norm, c.rmsNormEps);
    const logits = new Float32Array(seqs.length * c.vocabSize);
    be.matmul(logits, last, seqs.length, this.model.lmHead);
    return logits;
  }
}
