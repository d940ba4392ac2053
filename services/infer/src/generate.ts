/**
 * The generation loop: the prompt in one run, then one token per run over the KV cache,
 * sampled, until max_tokens or a stop id. Models and adapter mixes come from per-isolate caches
 * shared by every request.
 */
import { AdapterCache } from './adapters.ts';
import { ApiError } from './errors.ts';
import { ModelCache } from './models.ts';
import { wasmHeapBytes } from './ort-runtime.ts';
import type { ParsedRequest } from './request.ts';
import { SeededRandom, sampleToken } from './sampling.ts';

export interface TokenEvent {
  index: number;
  id: number;
}

export interface Completion {
  ids: number[];
  finish_reason: 'length' | 'stop';
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  served: {
    model: string;
    mode: 'base' | 'merged' | 'unmerged';
    adapters: string[];
    attention: string;
    weights: string;
    context: number;
  };
  timing: { load_ms: number; prefill_ms: number; decode_ms_per_token: number };
}

export interface InferEnv {
  BLOBS: R2Bucket;
  EDGE_MEMORY_BUDGET: string;
  MAX_NEW_TOKENS: string;
}

/** Shared by every request of this isolate. */
const models = new ModelCache();
const adapters = new AdapterCache();

export function limits(env: InferEnv): { budgetBytes: number; maxNewTokens: number } {
  return { budgetBytes: Number(env.EDGE_MEMORY_BUDGET) || 128 * 2 ** 20, maxNewTokens: Number(env.MAX_NEW_TOKENS) || 1024 };
}

/** Yields each token as it is chosen; returns the completion. */
export async function* generate(env: InferEnv, req: ParsedRequest): AsyncGenerator<TokenEvent, Completion> {
  const t0 = Date.now();
  const model = await models.get(env.BLOBS, req.model, { budgetBytes: limits(env).budgetBytes });
  const loadMs = Date.now() - t0;
  const { config } = model;
  const decoder = model.decoder;
  if (req.prompt.length + req.maxTokens > decoder.maxPositions) {
    throw new ApiError(
      400,
      'context_length_exceeded',
      `prompt (${req.prompt.length}) + max_tokens (${req.maxTokens}) exceed the ${decoder.maxPositions} positions this model is served with`,
      { field: 'max_tokens', context: decoder.maxPositions },
    );
  }
  const mix = await adapters.prepare(env.BLOBS, model, req.mix, req.mode, limits(env).budgetBytes);
  const state = mix.decoder.start(mix.feeds);
  const stops = new Set([...(req.ignoreEos ? [] : config.eosTokenIds), ...req.stopIds]);
  const rng = new SeededRandom(req.sampling.seed);

  const t1 = Date.now();
  let logits = await mix.exclusive(() => mix.decoder.forward(state, req.prompt));
  const prefillMs = Date.now() - t1;
  const ids: number[] = [];
  let finish: Completion['finish_reason'] = 'length';
  const t2 = Date.now();
  for (;;) {
    const id = sampleToken(logits, req.sampling, rng);
    ids.push(id);
    yield { index: ids.length - 1, id };
    if (stops.has(id)) {
      finish = 'stop';
      break;
    }
    if (ids.length >= req.maxTokens) break;
    logits = await mix.exclusive(() => mix.decoder.forward(state, [id]));
  }
  const decodeMs = Date.now() - t2;
  return {
    ids,
    finish_reason: finish,
    usage: { prompt_tokens: req.prompt.length, completion_tokens: ids.length, total_tokens: req.prompt.length + ids.length },
    served: {
      model: req.model.digest,
      mode: mix.served,
      adapters: req.mix.map((m) => `${m.ref.tenant}/${m.ref.name}@${m.ref.digest}*${m.weight}`),
      attention: model.graph.options.attention,
      weights: model.graph.options.weights,
      context: decoder.maxPositions,
    },
    timing: { load_ms: loadMs, prefill_ms: prefillMs, decode_ms_per_token: ids.length > 1 ? decodeMs / (ids.length - 1) : 0 },
  };
}

/** Runs to the end and returns the completion. */
export async function complete(env: InferEnv, req: ParsedRequest): Promise<Completion> {
  const it = generate(env, req);
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
  }
}

export interface Stats {
  wasm_heap_bytes: number;
  budget_bytes: number;
  models: { digest: string; weights_bytes: number; peak_bytes: number; context: number; load_ms: number; projection_weights: string }[];
}

export async function stats(env: InferEnv): Promise<Stats> {
  return {
    wasm_heap_bytes: wasmHeapBytes(),
    budget_bytes: limits(env).budgetBytes,
    models: (await models.loaded()).map((m) => ({
      digest: m.ref.digest,
      weights_bytes: m.footprint.weightBytes + m.footprint.fedWeightBytes,
      peak_bytes: m.footprint.peakBytes,
      context: m.footprint.context,
      load_ms: m.loadMs,
      projection_weights: m.graph.options.projectionWeights,
    })),
  };
}
