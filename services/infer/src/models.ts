/**
 * Base models, loaded once per isolate and shared by every request: config and safetensors
 * header from R2, the decoder graph built and its session created with the weights, then the
 * weight bytes dropped (the session holds them). Refused before any big read when the model's
 * peak footprint exceeds the edge budget.
 */
import {
  type DeltaTerm,
  type ModelConfig,
  parseModelConfig,
  parseSafetensorsHeader,
  readSafetensors,
  type SafetensorsHeader,
  type Tensor,
  withPlace,
} from '@lora-edge/shared';
import { ApiError } from './errors.ts';
import { onnx } from './onnx.ts';
import { onnxRuntime } from './ort-runtime.ts';
import { getBytes, getText, headSize, type ModelRef, modelKey } from './storage.ts';

/**
 * Models up to this many weight bytes serve merged mixes from a fused session of their own
 * (cached per mix): as fast as the base model. Larger ones serve every mix stacked, on the one
 * session (a second copy of their weights would not fit the isolate).
 */
export const FUSED_MAX_WEIGHTS = 8 * 2 ** 20;
/** The shortest context a model is served with when its full context does not fit the budget. */
const MIN_CONTEXT = 256;

export interface LoadedModel {
  ref: ModelRef;
  config: ModelConfig;
  graph: onnx.DecoderGraph;
  decoder: onnx.OnnxDecoder;
  session: onnx.OrtSessionLike;
  footprint: onnx.EdgeFootprint;
  header: SafetensorsHeader;
  loadMs: number;
  /** Runs one at a time on the session. */
  exclusive<T>(fn: () => Promise<T>): Promise<T>;
  lastUsed: number;
}

export interface ModelLoadOptions {
  budgetBytes: number;
  /** Overrides the graph choices (tests, benchmarks). */
  graph?: onnx.DecoderGraphOptions;
}

const BNB_STATE = '.quant_state.bitsandbytes__nf4';

async function readHeader(bucket: R2Bucket, key: string): Promise<SafetensorsHeader> {
  const size = await headSize(bucket, key);
  const head = await getBytes(bucket, key, { offset: 0, length: Math.min(size, 8) });
  const n = head.byteLength === 8 ? Number(new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true)) : 0;
  const prefix = n > 0 && 8 + n <= size ? await getBytes(bucket, key, { offset: 0, length: 8 + n }) : head;
  return parseSafetensorsHeader(prefix, size);
}

/**
 * Graph options for a checkpoint: NF4 when it is stored that way, constant projection weights
 * (fed weights cost a copy of every projection on every run: +30–90% per token, measured).
 */
function chooseGraph(header: SafetensorsHeader, override: onnx.DecoderGraphOptions = {}): onnx.DecoderGraphOptions {
  const nf4 = header.tensors.some((t) => t.name.endsWith(BNB_STATE));
  return { weights: nf4 ? 'nf4' : 'f32', projectionWeights: 'constant', ...override };
}

/**
 * The fastest setting that fits: the longest context (halving from the config's), with
 * prepacked matmul weights (~25% faster decode) when their extra copy fits too; else the
 * budget error with the smallest footprint's numbers.
 */
function fitFootprint(config: ModelConfig, options: onnx.DecoderGraphOptions, budget: number, what: string): onnx.EdgeFootprint {
  let context = config.maxPositions;
  for (;;) {
    for (const prepack of [true, false]) {
      const f = onnx.edgeFootprint(config, options, context, prepack);
      if (f.peakBytes <= budget) return f;
      if (!prepack && context <= MIN_CONTEXT) {
        onnx.assertFitsEdge(f, budget, what);
        return f;
      }
    }
    context = Math.max(MIN_CONTEXT, context >> 1);
  }
}

function lock(): <T>(fn: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(fn: () => Promise<T>) => {
    const run = tail.then(fn, fn);
    tail = run.catch(() => undefined);
    return run;
  };
}

async function load(bucket: R2Bucket, ref: ModelRef, opts: ModelLoadOptions): Promise<LoadedModel> {
  const t0 = Date.now();
  const configKey = modelKey(ref, 'config.json');
  const weightsKey = modelKey(ref, 'model.safetensors');
  const config = parseModelConfig(await getText(bucket, configKey), configKey);
  const header = await readHeader(bucket, weightsKey);
  const options = chooseGraph(header, opts.graph);
  const footprint = fitFootprint(
    config,
    options,
    opts.budgetBytes,
    `model ${ref.digest.slice(0, 12)}… (${(header.fileSize / 2 ** 20).toFixed(1)} MiB file)`,
  );
  const graph = onnx.buildDecoderGraph(config, { ...options, maxPositions: footprint.context });
  const ort = await onnxRuntime();
  // Graphs that take their projection weights as inputs (an override) need the file for the fed
  // base weights; others stream from R2 into the external-data file, tensor by tensor, so the
  // checkpoint never sits in memory beside it.
  const { weights, base } = graph.fedWeights.length
    ? await readWhole(bucket, weightsKey, graph, (n) => n)
    : { weights: await streamWeights(bucket, weightsKey, graph, header), base: undefined };
  const created = await onnx.createOrtDecoder(ort, graph, weights, sessionOptions(footprint), base);
  return {
    ref,
    config,
    graph,
    decoder: created.decoder,
    session: created.session,
    footprint,
    header,
    loadMs: Date.now() - t0,
    exclusive: lock(),
    lastUsed: Date.now(),
  };
}

function sessionOptions(f: onnx.EdgeFootprint): Record<string, unknown> {
  return f.prepack ? {} : { extra: { session: { disable_prepacking: '1' } } };
}

type Source = (n: string) => Tensor | undefined;

async function readWhole(
  bucket: R2Bucket,
  key: string,
  graph: onnx.DecoderGraph,
  transform: (base: Source) => Source,
): Promise<{ weights: Uint8Array; base: Source }> {
  const file = readSafetensors(await getBytes(bucket, key));
  const get: Source = (n) => (file.has(n) ? file.tensor(n) : undefined);
  const source = transform(get);
  return { weights: onnx.buildWeightData(graph, source), base: source };
}

/** A session of its own for a merged mix: the model with `terms` fused into its weights. */
export interface FusedSession {
  decoder: onnx.OnnxDecoder;
  session: onnx.OrtSessionLike;
  exclusive<T>(fn: () => Promise<T>): Promise<T>;
  bytes: number;
}

/** Whether merged mixes of this model get fused sessions (small float models, room in the budget for a few). */
export function canFuse(model: LoadedModel, budgetBytes: number, sessions: number): boolean {
  const w = model.footprint.weightBytes;
  return model.graph.options.weights === 'f32' && w <= FUSED_MAX_WEIGHTS && model.footprint.peakBytes + sessions * 1.2 * w <= budgetBytes;
}

export async function fusedSession(
  bucket: R2Bucket,
  model: LoadedModel,
  terms: ReadonlyMap<string, readonly DeltaTerm[]>,
): Promise<FusedSession> {
  const { weights } = await readWhole(bucket, modelKey(model.ref, 'model.safetensors'), model.graph, (get) =>
    onnx.fuseSource(model.graph, terms, get),
  );
  const created = await onnx.createOrtDecoder(await onnxRuntime(), model.graph, weights, sessionOptions(model.footprint));
  return { decoder: created.decoder, session: created.session, exclusive: lock(), bytes: weights.byteLength };
}

async function streamWeights(bucket: R2Bucket, key: string, graph: onnx.DecoderGraph, header: SafetensorsHeader): Promise<Uint8Array> {
  const obj = await bucket.get(key);
  if (!obj) throw new ApiError(404, 'not_found', `no object at ${key}`, { file: key });
  const assembler = new onnx.WeightAssembler(graph, header.tensors);
  const reader = obj.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    assembler.push(value);
  }
  return withPlace({ file: key }, () => assembler.finish());
}

/** Base tensors read by range from R2 (DoRA row norms, merged weights): the file is not kept in memory. */
export async function readBaseTensors(bucket: R2Bucket, model: LoadedModel, names: readonly string[]): Promise<Map<string, Tensor>> {
  const key = modelKey(model.ref, 'model.safetensors');
  const out = new Map<string, Tensor>();
  await Promise.all(
    names.map(async (name) => {
      const info = model.header.byName.get(name);
      if (!info) return;
      const data = await getBytes(bucket, key, { offset: info.begin, length: info.end - info.begin });
      out.set(name, { dtype: info.dtype, shape: [...info.shape], data });
    }),
  );
  return out;
}

/** Per-isolate cache: one load per model however many requests ask at once; a failed load is forgotten. */
export class ModelCache {
  private readonly entries = new Map<string, Promise<LoadedModel>>();

  get(bucket: R2Bucket, ref: ModelRef, opts: ModelLoadOptions): Promise<LoadedModel> {
    let p = this.entries.get(ref.digest);
    if (!p) {
      p = this.makeRoom(opts.budgetBytes).then(() => load(bucket, ref, opts));
      this.entries.set(ref.digest, p);
      p.catch(() => this.entries.delete(ref.digest));
    }
    return p.then((m) => {
      m.lastUsed = Date.now();
      return m;
    });
  }

  /** Sessions of loaded models, least recently used first, are released until a new model's budget is free. */
  private async makeRoom(budget: number): Promise<void> {
    const loaded = (await Promise.allSettled([...this.entries.values()]))
      .flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
      .sort((a, b) => a.lastUsed - b.lastUsed);
    let used = loaded.reduce((s, m) => s + m.footprint.runPeakBytes, 0);
    for (const m of loaded) {
      if (used <= budget / 2) break;
      this.entries.delete(m.ref.digest);
      used -= m.footprint.runPeakBytes;
      await m.exclusive(() => m.session.release());
    }
  }

  loaded(): Promise<LoadedModel[]> {
    return Promise.allSettled([...this.entries.values()]).then((rs) => rs.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : [])));
  }
}
