/**
 * Edge inference: per-token decode latency of the ONNX decoder under onnxruntime-web (WASM, one
 * thread; in Node: workerd runs the same WASM but its clock does not advance during CPU work, so
 * it cannot time itself), for stories260k and a random model of llama2.c's 15M shape. Base,
 * merged, one adapter unmerged, a stacked three-adapter mix, the same mix baked into the session
 * (what onnxruntime's own LoRA adapters would give; onnxruntime-web cannot load them), graph
 * variants (contrib attention, 4-bit weights, prepacking), beside the shared reference decoder
 * and the runner's engine on the same model.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine, loadBackend, loadRunnerModel, type MixEntry } from '@lora-edge/gpu-runner';
import {
  forwardToken,
  fromFloat32,
  type LlamaWeights,
  type LoraAdapter,
  loadLlamaWeights,
  loadLoraAdapter,
  type ModelConfig,
  mixTerms,
  newCache,
  PROJECTIONS,
  parseModelConfig,
  projectionModule,
  readSafetensors,
  serializeSafetensors,
  type Tensor,
} from '@lora-edge/shared';
import * as ort from 'onnxruntime-web';
import {
  buildDecoderGraph,
  buildWeightData,
  createOrtDecoder,
  type DecoderGraphOptions,
  fuseSource,
  mergedFeeds,
  type OrtModuleLike,
  unmergedFeeds,
} from '../shared/src/onnx/index.ts';
import { ADAPTERS, STORIES } from '../test/fixtures.ts';
import { type BenchContext, median, type Row, type Suite } from './lib.ts';

ort.env.wasm.numThreads = 1;
const ORT = ort as unknown as OrtModuleLike;

interface Model {
  name: string;
  config: ModelConfig;
  get: (n: string) => Tensor | undefined;
  /** Adapters: one for "unmerged", three with weights for the mix. */
  single: LoraAdapter;
  mix: { name: string; adapter: LoraAdapter; weight: number }[];
  tokens: number;
}

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32 - 0.5;
  };
}

function stories(quick: boolean): Model {
  const config = parseModelConfig(readFileSync(join(STORIES, 'config.json'), 'utf8'));
  const st = readSafetensors(new Uint8Array(readFileSync(join(STORIES, 'model.safetensors'))));
  const adapter = (n: string) =>
    loadLoraAdapter({
      configText: readFileSync(join(ADAPTERS, n, 'adapter_config.json'), 'utf8'),
      weights: new Uint8Array(readFileSync(join(ADAPTERS, n, 'adapter_model.safetensors'))),
    });
  const ref = JSON.parse(readFileSync(join(ADAPTERS, 'mixes', 'reference.json'), 'utf8')) as { adapters: string[]; weights: number[] };
  return {
    name: 'stories260k',
    config,
    get: (n) => (st.has(n) ? st.tensor(n) : undefined),
    single: adapter('tiny-all-r8'),
    mix: ref.adapters.map((n, i) => ({ name: n, adapter: adapter(n), weight: ref.weights[i] as number })),
    tokens: quick ? 48 : 128,
  };
}

function randomAdapter(config: ModelConfig, r: number, seed: number): LoraAdapter {
  const next = rng(seed);
  const tensors = [];
  for (let l = 0; l < config.numLayers; l++) {
    for (const p of PROJECTIONS) {
      const out = p === 'gate_proj' || p === 'up_proj' ? config.intermediateSize : config.hiddenSize;
      const inF = p === 'down_proj' ? config.intermediateSize : config.hiddenSize;
      const key = `base_model.model.${projectionModule(l, p)}`;
      const f = (n: number, s: number) => Float32Array.from({ length: n }, () => next() * s);
      tensors.push({ name: `${key}.lora_A.weight`, ...fromFloat32(f(r * inF, 1 / Math.sqrt(inF)), 'F32', [r, inF]) });
      tensors.push({ name: `${key}.lora_B.weight`, ...fromFloat32(f(out * r, 0.01), 'F32', [out, r]) });
    }
  }
  const cfg = { peft_type: 'LORA', r, lora_alpha: 2 * r, target_modules: [...PROJECTIONS] };
  return loadLoraAdapter({ configText: JSON.stringify(cfg), weights: serializeSafetensors(tensors) });
}

/** llama2.c's 15M shape (tied classifier, as stories15M), random weights. */
function model15M(quick: boolean): Model {
  const config = parseModelConfig(
    JSON.stringify({
      model_type: 'llama',
      hidden_size: 288,
      intermediate_size: 768,
      num_hidden_layers: 6,
      num_attention_heads: 6,
      num_key_value_heads: 6,
      vocab_size: 32000,
      max_position_embeddings: 256,
      rms_norm_eps: 1e-5,
      tie_word_embeddings: true,
    }),
  );
  const next = rng(15);
  const m = new Map<string, Tensor>();
  const put = (name: string, shape: number[], scale: number) =>
    m.set(
      name,
      fromFloat32(
        Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => next() * scale),
        'F32',
        shape,
      ),
    );
  put('model.embed_tokens.weight', [32000, 288], 1);
  for (let l = 0; l < 6; l++) {
    m.set(`model.layers.${l}.input_layernorm.weight`, fromFloat32(new Float32Array(288).fill(1), 'F32', [288]));
    m.set(`model.layers.${l}.post_attention_layernorm.weight`, fromFloat32(new Float32Array(288).fill(1), 'F32', [288]));
    for (const p of PROJECTIONS) {
      const out = p === 'gate_proj' || p === 'up_proj' ? 768 : 288;
      const inF = p === 'down_proj' ? 768 : 288;
      put(`${projectionModule(l, p)}.weight`, [out, inF], 2 / Math.sqrt(inF));
    }
  }
  m.set('model.norm.weight', fromFloat32(new Float32Array(288).fill(1), 'F32', [288]));
  return {
    name: '15M shape',
    config,
    get: (n) => m.get(n),
    single: randomAdapter(config, 8, 100),
    mix: [4, 8, 8].map((r, i) => ({
      name: `r${r}-${i}`,
      adapter: randomAdapter(config, r, 200 + i),
      weight: [0.5, 0.3, 0.2][i] as number,
    })),
    tokens: quick ? 24 : 64,
  };
}

/** Median over reps of decode time per token after an 8-token prompt. */
async function perToken(
  step: (id: number) => Promise<Float32Array>,
  start: () => Promise<Float32Array>,
  tokens: number,
  reps = 5,
): Promise<number> {
  const times: number[] = [];
  for (let r = 0; r < reps + 1; r++) {
    let logits = await start();
    const t0 = performance.now();
    for (let i = 0; i < tokens; i++) {
      let best = 0;
      for (let j = 1; j < logits.length; j++) if ((logits[j] as number) > (logits[best] as number)) best = j;
      logits = await step(best);
    }
    if (r > 0) times.push((performance.now() - t0) / tokens); // the first rep warms the JIT
  }
  return median(times);
}

const PROMPT = [1, 5, 9, 33, 7, 2, 11, 4];

/** One measured configuration; each runs in a fresh process (a long-lived WASM heap that has held many sessions skews timings). */
interface Case {
  model: 'stories' | '15m';
  quick: boolean;
  options: DecoderGraphOptions;
  feeds?: 'single' | 'mix' | 'merged-mix';
  /** The feeds as constants of the session (onnxruntime's LoRA adapter semantics). */
  bake?: boolean;
  /** The mix fused into the session's weights (a merged artifact served as a model). */
  fused?: boolean;
  noPrepack?: boolean;
}

interface CaseResult {
  ms: number;
  bytes: number;
  perRun: number;
}

async function runCase(c: Case): Promise<CaseResult> {
  const m = c.model === 'stories' ? stories(c.quick) : model15M(c.quick);
  const mixMap = mixTerms(m.mix);
  const graph = buildDecoderGraph(m.config, c.options);
  const source = c.fused ? fuseSource(graph, mixMap, m.get) : m.get;
  const f =
    c.feeds === 'single'
      ? unmergedFeeds(graph, mixTerms([{ name: 'single', adapter: m.single, weight: 1 }]), m.get)
      : c.feeds === 'mix'
        ? unmergedFeeds(graph, mixMap, m.get)
        : c.feeds === 'merged-mix'
          ? mergedFeeds(graph, mixMap, m.get)
          : undefined;
  const sessionOptions = c.noPrepack ? { extra: { session: { disable_prepacking: '1' } } } : {};
  const { decoder, session } = await createOrtDecoder(
    ORT,
    graph,
    buildWeightData(graph, source),
    sessionOptions,
    source,
    c.bake ? f?.feeds : undefined,
  );
  const adapter = c.bake ? undefined : f;
  let state = decoder.start(adapter);
  const run = () =>
    perToken(
      (id) => decoder.forward(state, [id]),
      () => {
        state = decoder.start(adapter);
        return decoder.forward(state, PROMPT);
      },
      m.tokens,
      c.model === 'stories' ? 9 : 5,
    );
  await run(); // V8 compiles onnxruntime's WASM lazily and tiers up hot code: warm it
  const ms = await run();
  await session.release();
  return { ms, bytes: graph.weights.byteLength + graph.fedWeights.reduce((n, e) => n + e.byteLength, 0), perRun: f?.bytes ?? 0 };
}

function onnxLatency(c: Case): CaseResult {
  const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
    env: { ...process.env, INFER_BENCH_CASE: JSON.stringify(c) },
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`bench case ${JSON.stringify(c)} failed:\n${r.stderr}`);
  return JSON.parse(line.slice(7)) as CaseResult;
}

function referenceLatency(w: LlamaWeights, tokens: number): Promise<number> {
  let cache = newCache(w, PROMPT.length + tokens + 1);
  return perToken(
    async (id) => forwardToken(w, cache, id),
    async () => {
      cache = newCache(w, PROMPT.length + tokens + 1);
      let l: Float32Array = new Float32Array(0);
      for (const t of PROMPT) l = forwardToken(w, cache, t);
      return l;
    },
    tokens,
    1,
  );
}

async function engineLatency(m: Model, mix: MixEntry[] | undefined): Promise<{ ms: number; backend: string }> {
  const backend = loadBackend('auto');
  backend.setThreads?.(2);
  const source = { config: m.config, get: m.get };
  const engine = new Engine(backend, loadRunnerModel(backend, source), source);
  const run = async () => {
    const t0 = performance.now();
    await engine.generate({ prompt: PROMPT, maxTokens: m.tokens, ignoreEos: true, mix, mode: 'unmerged' });
    return (performance.now() - t0) / m.tokens;
  };
  await run();
  return { ms: median([await run(), await run(), await run()]), backend: backend.name };
}

async function rowsFor(m: Model, ctx: BenchContext): Promise<Row[]> {
  const rows: Row[] = [];
  const k = { model: m.name === 'stories260k' ? 'stories' : '15m', quick: ctx.quick } as const;
  const floor = (bytes: number) => ctx.floorMs(bytes);
  const ref = await referenceLatency(loadLlamaWeights(m.config, m.get), Math.min(m.tokens, m.name === 'stories260k' ? 64 : 8));
  const refRow = { value: ref, label: 'shared reference decoder (TypeScript), same model' };

  const base = onnxLatency({ ...k, options: {} });
  rows.push({
    name: `${m.name}: onnxruntime-web, base`,
    value: base.ms,
    unit: 'ms/tok',
    baseline: refRow,
    floor: floor(base.bytes),
    note: `${(base.bytes / 1e6).toFixed(1)} MB of weights`,
  });
  const mergedSession = onnxLatency({ ...k, options: {}, fused: true });
  rows.push({
    name: `${m.name}: merged 3-mix, fused weights in the session`,
    value: mergedSession.ms,
    unit: 'ms/tok',
    baseline: { value: base.ms, label: 'base, same run' },
  });
  const mergedFed = onnxLatency({ ...k, options: { projectionWeights: 'input' }, feeds: 'merged-mix' });
  rows.push({
    name: `${m.name}: merged 3-mix, fused weights fed per run (one graph)`,
    value: mergedFed.ms,
    unit: 'ms/tok',
    baseline: { value: mergedSession.ms, label: 'fused in the session' },
    note: `${((mergedFed.bytes - base.bytes + mergedFed.perRun) / 1e6).toFixed(1)} MB copied into WASM per run`,
  });
  const single = onnxLatency({ ...k, options: {}, feeds: 'single' });
  rows.push({
    name: `${m.name}: one adapter unmerged (rank ${m.single.modules.values().next().value?.r})`,
    value: single.ms,
    unit: 'ms/tok',
    baseline: { value: base.ms, label: 'base, same run' },
  });
  const stacked = onnxLatency({ ...k, options: {}, feeds: 'mix' });
  rows.push({
    name: `${m.name}: stacked 3-mix unmerged (factors fed per run)`,
    value: stacked.ms,
    unit: 'ms/tok',
    baseline: { value: mergedSession.ms, label: 'merged 3-mix in the session' },
    note: `${(stacked.perRun / 1e6).toFixed(2)} MB of factors per run`,
  });
  const baked = onnxLatency({ ...k, options: {}, feeds: 'mix', bake: true });
  rows.push({
    name: `${m.name}: stacked 3-mix baked into the session (ORT-adapter equivalent)`,
    value: baked.ms,
    unit: 'ms/tok',
    baseline: { value: stacked.ms, label: 'factors fed per run' },
    note: 'onnxruntime-web 1.30 has no LoRA adapter API: this is its best case (no per-run copy, one session per mix)',
  });
  if (m.config.headDim % 16 === 0) {
    const gqa = onnxLatency({ ...k, options: { attention: 'contrib' } });
    rows.push({
      name: `${m.name}: base, contrib GroupQueryAttention`,
      value: gqa.ms,
      unit: 'ms/tok',
      baseline: { value: base.ms, label: 'standard-op attention' },
    });
  }
  if (m.name !== 'stories260k' && !ctx.quick) {
    for (const w of ['nf4', 'q4'] as const) {
      const q = onnxLatency({ ...k, options: { weights: w } });
      rows.push({
        name: `${m.name}: base, ${w === 'nf4' ? 'NF4 MatMulBnb4' : '4-bit MatMulNBits'} projections`,
        value: q.ms,
        unit: 'ms/tok',
        baseline: { value: base.ms, label: 'f32 Gemm' },
        note: `${(q.bytes / 1e6).toFixed(1)} MB of weights`,
      });
    }
    const noPrepack = onnxLatency({ ...k, options: {}, noPrepack: true });
    rows.push({
      name: `${m.name}: base, prepacking off`,
      value: noPrepack.ms,
      unit: 'ms/tok',
      baseline: { value: base.ms, label: 'prepacking on (every other row)' },
      note: 'what the Worker runs when the packed copy of the head does not fit its budget',
    });
  }
  rows.push({ name: `${m.name}: reference decoder (TypeScript, float64 sums)`, value: ref, unit: 'ms/tok' });
  try {
    const e = await engineLatency(m, undefined);
    const eMix = await engineLatency(
      m,
      m.mix.map((x) => ({ id: x.name, adapter: x.adapter, weight: x.weight })),
    );
    rows.push({
      name: `${m.name}: runner engine (${e.backend}), base`,
      value: e.ms,
      unit: 'ms/tok',
      baseline: { value: base.ms, label: 'onnxruntime-web base' },
    });
    rows.push({
      name: `${m.name}: runner engine (${eMix.backend}), 3-mix unmerged`,
      value: eMix.ms,
      unit: 'ms/tok',
      baseline: { value: stacked.ms, label: 'onnxruntime-web stacked' },
    });
  } catch (e) {
    rows.push({ name: `${m.name}: runner engine`, value: Number.NaN, unit: 'ms/tok', note: `not run: ${(e as Error).message}` });
  }
  return rows;
}

export const suite: Suite = {
  title: 'edge inference (onnxruntime-web WASM, 1 thread, in Node)',
  async run(ctx) {
    return [...(await rowsFor(stories(ctx.quick), ctx)), ...(await rowsFor(model15M(ctx.quick), ctx))];
  },
};

// A child process of onnxLatency: run one case and report.
const CASE = process.env.INFER_BENCH_CASE;
if (CASE) {
  console.log(`RESULT ${JSON.stringify(await runCase(JSON.parse(CASE) as Case))}`);
  process.exit(0);
}
