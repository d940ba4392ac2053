import { LoraEdgeError } from '../errors.ts';
import type { ModelConfig } from '../model/config.ts';
import { buildDecoderGraph, type DecoderGraphOptions } from './decoder-graph.ts';

/**
 * What a decoder costs in isolate memory, from its shapes. Calibrated on onnxruntime-web 1.30
 * (WASM, one thread) by reading the WASM heap size (it only grows, so it is the high-water
 * mark): after session creation it is the runtime's 16 MiB start plus the weights, plus, with
 * prepacking, about one more vocab × hidden matrix (the tied embedding stays for Gather beside
 * its packed copy for the head); the heap grows in steps of up to ~20%. While the session is
 * created the JS side still holds the external-data copy of the weights; while generating it
 * holds the KV cache (past and present) and the heap holds its copies.
 */
export const WASM_HEAP_BASE = 16 * 2 ** 20;
/** JS heap of the Worker with onnxruntime-web and a session loaded, idle (glue, graph, caches), rounded up. */
export const JS_BASE = 8 * 2 ** 20;
export const WORKER_MEMORY_LIMIT = 128 * 2 ** 20;
/** Emscripten grows the heap geometrically: the high-water mark overshoots what is used. */
const HEAP_GROWTH = 1.2;

export interface EdgeFootprint {
  /** Session-resident weight bytes (the external-data file). */
  weightBytes: number;
  /** Weights fed on every run (projectionWeights: 'input'), held in JS and copied into the heap per run. */
  fedWeightBytes: number;
  /** Extra heap for prepacked matmul weights (0 without prepacking). */
  prepackBytes: number;
  /** One copy of the KV cache at `context` tokens. */
  kvBytes: number;
  /** Activations of the largest run (a prompt of `context` tokens) and its logits. */
  activationBytes: number;
  /** While the session is created: the JS copy of the weights beside the heap. */
  loadPeakBytes: number;
  /** While generating at full context. */
  runPeakBytes: number;
  peakBytes: number;
  context: number;
  prepack: boolean;
}

export function edgeFootprint(
  config: ModelConfig,
  options: DecoderGraphOptions = {},
  context = config.maxPositions,
  prepack = false,
): EdgeFootprint {
  const graph = buildDecoderGraph(config, { ...options, maxPositions: Math.min(context, options.maxPositions ?? context) });
  const weightBytes = graph.weights.byteLength;
  const fedWeightBytes = graph.fedWeights.reduce((s, e) => s + e.byteLength, 0);
  const prepackBytes = prepack ? config.vocabSize * config.hiddenSize * 4 : 0;
  const kvBytes = 2 * config.numLayers * config.numKvHeads * config.headDim * context * 4;
  const h = config.hiddenSize;
  const activationBytes =
    4 * (config.vocabSize * 2 + context * (config.intermediateSize * 3 + h * 8) + config.numHeads * context * context * 2);
  const heapLoad = HEAP_GROWTH * (WASM_HEAP_BASE + weightBytes + prepackBytes);
  const heapRun = HEAP_GROWTH * (WASM_HEAP_BASE + weightBytes + prepackBytes + fedWeightBytes + 2 * kvBytes + activationBytes);
  const loadPeakBytes = Math.round(JS_BASE + weightBytes + fedWeightBytes + heapLoad);
  const runPeakBytes = Math.round(JS_BASE + fedWeightBytes + 2 * kvBytes + heapRun);
  return {
    weightBytes,
    fedWeightBytes,
    prepackBytes,
    kvBytes,
    activationBytes,
    loadPeakBytes,
    runPeakBytes,
    peakBytes: Math.max(loadPeakBytes, runPeakBytes),
    context,
    prepack,
  };
}

/** A model the edge cannot hold: the router sends the job to the GPU path instead. */
export class EdgeBudgetError extends LoraEdgeError {
  /** Machine-readable reason (the router's signal to route elsewhere). */
  readonly reason = 'edge_budget_exceeded';
  constructor(
    readonly requiredBytes: number,
    readonly budgetBytes: number,
    what: string,
  ) {
    super(
      'config_unsupported',
      `${what} needs ~${(requiredBytes / 2 ** 20).toFixed(1)} MiB at its peak; the edge budget is ${(budgetBytes / 2 ** 20).toFixed(1)} MiB: run it on the GPU path`,
    );
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), code: this.reason, required_bytes: this.requiredBytes, budget_bytes: this.budgetBytes, route: 'gpu' };
  }
}

export function assertFitsEdge(f: EdgeFootprint, budgetBytes: number, what = 'this model'): void {
  if (f.peakBytes > budgetBytes) throw new EdgeBudgetError(f.peakBytes, budgetBytes, what);
}
