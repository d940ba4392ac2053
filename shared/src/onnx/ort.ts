import { bakeInputs } from './bake.ts';
import { OnnxDecoder, type OutputTensor } from './decoder.ts';
import type { DecoderGraph } from './decoder-graph.ts';
import type { Feeds } from './feeds.ts';
import { encodeModel } from './proto.ts';
import type { TensorSource } from './weights.ts';

/**
 * The slice of the onnxruntime JavaScript API (onnxruntime-web, -node, -react-native share it)
 * the decoder uses, typed structurally so this package never imports a runtime: the caller
 * passes its `ort` module.
 */
export interface OrtSessionLike {
  run(feeds: Record<string, unknown>): Promise<Record<string, OutputTensor>>;
  release(): Promise<void>;
}
export interface OrtModuleLike {
  Tensor: new (type: 'float32' | 'int64' | 'uint8', data: Float32Array | BigInt64Array | Uint8Array, dims: readonly number[]) => unknown;
  InferenceSession: { create(model: Uint8Array, options?: Record<string, unknown>): Promise<OrtSessionLike> };
}

export interface OrtDecoder {
  decoder: OnnxDecoder;
  session: OrtSessionLike;
  /** Bytes of the encoded graph (weights excluded). */
  modelBytes: number;
}

/**
 * Creates a session for `graph` with `weights` as its external-data file and wraps it in an
 * OnnxDecoder. Single-threaded CPU (wasm) is the caller's `ort.env` business; session options
 * may be extended by `options`. `base` is needed only when the projection weights are inputs;
 * `bake` turns those inputs into constants of this session (see bakeInputs).
 */
export async function createOrtDecoder(
  ort: OrtModuleLike,
  graph: DecoderGraph,
  weights: Uint8Array,
  options: Record<string, unknown> = {},
  base?: TensorSource,
  bake?: Feeds,
): Promise<OrtDecoder> {
  if (bake) graph = { ...graph, model: bakeInputs(graph.model, bake) };
  const model = encodeModel(graph.model);
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['wasm'],
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
    externalData: [{ path: graph.weights.location, data: weights }],
    ...options,
  });
  const run = async (feeds: Feeds) => {
    const wrapped: Record<string, unknown> = {};
    for (const [k, t] of Object.entries(feeds)) wrapped[k] = new ort.Tensor(t.type, t.data, t.dims);
    return session.run(wrapped);
  };
  return { decoder: new OnnxDecoder(graph, run, base), session, modelBytes: model.byteLength };
}
