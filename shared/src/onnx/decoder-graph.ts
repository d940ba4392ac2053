import { LoraEdgeError } from '../errors.ts';
import type { ModelConfig } from '../model/config.ts';
import { attr, GraphBuilder, MS_DOMAIN } from './graph.ts';
import { allGroups, type GroupLayout, kvNames } from './layout.ts';
import { DataType, type ModelData, type TensorProtoData } from './proto.ts';
import { q4Blocks } from './q4.ts';
import { ropeTables } from './rope.ts';

/**
 * A Llama-family decoder as one ONNX graph with a KV cache:
 *   inputs  input_ids [1, S] int64, position_ids [1, S] int64, past_key_values.{l}.key|value [1, kvH, P, d]
 *   outputs logits [1, S or 1, vocab], present.{l}.key|value [1, kvH, P + S, d]
 * Projections are packed per group (qkv, o, gate_up, down). With `lora`, every group takes
 * stacked low-rank factors and DoRA's row scale (rank 0 and ones when no adapter is active), so
 * one session serves the base model and any adapter mix. The factors of all groups arrive in a
 * few inputs (see LoraInputs) and are split in the graph: each fed input costs a copy and a
 * tensor in onnxruntime-web, so fewer inputs means a faster run. With
 * `projectionWeights: 'input'` the group weights are graph inputs too, fed on every run: then
 * merged weights are fed in place of the base ones (onnxruntime-web cannot override an
 * initializer: its JS API accepts only the session's true inputs).
 */
export interface DecoderGraphOptions {
  /**
   * `standard`: attention from ONNX ops only (RoPE by a half swap, GQA by head grouping).
   * `contrib`: com.microsoft.GroupQueryAttention with packed QKV and built-in RoPE.
   */
  attention?: 'standard' | 'contrib';
  /**
   * Projection weights: float32 (Gemm); `q4`: 4-bit blockwise with zero points
   * (com.microsoft.MatMulNBits); `nf4`: bitsandbytes NF4 (com.microsoft.MatMulBnb4), so a
   * QLoRA-quantized checkpoint is served as it is stored.
   */
  weights?: 'f32' | 'q4' | 'nf4';
  /** Block size of q4 (default 32) or nf4 (default 64). */
  blockSize?: number;
  /** Stacked LoRA factor inputs on every projection group. */
  lora?: boolean;
  /** DoRA row-scale inputs (only with lora). */
  rowScale?: boolean;
  /**
   * `constant`: projection weights are initializers (loaded once, prepacked). `input`: graph
   * inputs fed on every run (base or merged), so merged weights need no second session.
   */
  projectionWeights?: 'constant' | 'input';
  /** `last`: logits of the last position only (generation); `all`: every position. */
  logits?: 'last' | 'all';
  /** RoPE table length; default the config's max_position_embeddings. */
  maxPositions?: number;
  /** Name of the external-data file the weights are read from. */
  externalDataName?: string;
}

export type ResolvedGraphOptions = Required<DecoderGraphOptions>;

export function resolveGraphOptions(config: ModelConfig, o: DecoderGraphOptions = {}): ResolvedGraphOptions {
  const lora = o.lora ?? true;
  return {
    attention: o.attention ?? 'standard',
    weights: o.weights ?? 'f32',
    blockSize: o.blockSize ?? (o.weights === 'nf4' ? 64 : 32),
    lora,
    rowScale: lora && (o.rowScale ?? true),
    projectionWeights: o.projectionWeights ?? 'constant',
    logits: o.logits ?? 'last',
    maxPositions: o.maxPositions ?? config.maxPositions,
    externalDataName: o.externalDataName ?? 'weights.bin',
  };
}

/** How one initializer's bytes are made from the checkpoint (see weights.ts). */
export type WeightRecipe =
  /** float32 rows of these tensors, concatenated (a packed group or a single tensor). */
  | { kind: 'f32'; tensors: string[] }
  /** One part of the 4-bit quantization of these tensors' concatenated rows. */
  | { kind: 'q4'; tensors: string[]; part: 'codes' | 'scales' | 'zeroPoints'; rows: number; cols: number; blockSize: number }
  /** NF4 codes or absmax of these tensors (quantized here, or read as stored by bitsandbytes). */
  | { kind: 'nf4'; tensors: string[]; part: 'codes' | 'absmax'; blockSize: number };

export interface WeightEntry {
  name: string;
  offset: number;
  byteLength: number;
  recipe: WeightRecipe;
}

/**
 * Groups whose factors share one input: A's of groups with the same in-features stacked by
 * rows ([ΣR, in]), Bᵀ's of groups with the same out-features stacked by rows ([ΣR, out]); the
 * int64 `ranks` input gives each group's R (0 = no adapter there), in `groups` order.
 */
export interface LoraFamily {
  input: string;
  ranks: string;
  dim: number;
  /** Group prefixes, in row order. */
  groups: string[];
}

export interface LoraInputs {
  a: LoraFamily[];
  b: LoraFamily[];
  /** DoRA row scales of every group, concatenated in graph.groups order ([Σ out]); absent without rowScale. */
  rowScale?: string;
}

export interface DecoderGraph {
  model: ModelData;
  /** Present with `lora`. */
  lora?: LoraInputs;
  config: ModelConfig;
  options: ResolvedGraphOptions;
  groups: GroupLayout[];
  /** The external-data file: every weight initializer, in order. */
  weights: { location: string; byteLength: number; entries: WeightEntry[] };
  /** Weights that are graph inputs (projectionWeights: 'input'): made by the same recipes, fed per run. */
  fedWeights: WeightEntry[];
}

const ALIGN = 64;

export function buildDecoderGraph(config: ModelConfig, options: DecoderGraphOptions = {}): DecoderGraph {
  const o = resolveGraphOptions(config, options);
  if (o.weights !== 'f32' && (o.blockSize < 16 || o.blockSize & (o.blockSize - 1))) {
    throw new LoraEdgeError('invalid_argument', `block size ${o.blockSize} must be a power of two ≥ 16`);
  }
  if (config.headDim % 2) throw new LoraEdgeError('config_unsupported', `head_dim ${config.headDim} is odd: RoPE needs pairs`);
  if (o.attention === 'contrib' && config.headDim % 16) {
    // onnxruntime's CPU GroupQueryAttention refuses other head sizes at run time.
    throw new LoraEdgeError(
      'config_unsupported',
      `GroupQueryAttention needs head_dim to be a multiple of 16, not ${config.headDim}: use attention 'standard'`,
    );
  }
  const g = new GraphBuilder('lora-edge-decoder');
  const F = DataType.FLOAT;
  const H = config.numHeads;
  const KVH = config.numKvHeads;
  const D = config.headDim;
  const hidden = config.hiddenSize;
  const group = H / KVH;
  const entries: WeightEntry[] = [];
  const fedWeights: WeightEntry[] = [];
  let cursor = 0;

  /** A weight: an initializer in the external-data file, or (fed) a graph input made by the same recipe. */
  const weight = (name: string, dataType: DataType, dims: number[], recipe: WeightRecipe, fed = false): string => {
    const elem = dataType === DataType.FLOAT ? 4 : 1;
    const byteLength = dims.reduce((a, b) => a * b, 1) * elem;
    if (fed) {
      fedWeights.push({ name, offset: -1, byteLength, recipe });
      return g.input(name, dataType, dims);
    }
    const offset = cursor;
    cursor += Math.ceil(byteLength / ALIGN) * ALIGN;
    entries.push({ name, offset, byteLength, recipe });
    const t: TensorProtoData = { name, dataType, dims, external: { location: o.externalDataName, offset, length: byteLength } };
    return g.initializer(t);
  };
  const fed = o.projectionWeights === 'input';

  // ---- inputs
  g.input('input_ids', DataType.INT64, [1, 'sequence_length']);
  g.input('position_ids', DataType.INT64, [1, 'sequence_length']);
  for (let l = 0; l < config.numLayers; l++) {
    const kv = kvNames(l);
    g.input(kv.pastKey, F, [1, KVH, 'past_sequence_length', D]);
    g.input(kv.pastValue, F, [1, KVH, 'past_sequence_length', D]);
  }

  // ---- shared values: token rows, RoPE tables, causal mask
  const embed = weight(
    'model.embed_tokens.weight',
    F,
    [config.vocabSize, hidden],
    { kind: 'f32', tensors: ['model.embed_tokens.weight'] },
    false,
  );
  const ids = g.op1('Reshape', ['input_ids', g.i64([-1])]);
  const pos = g.op1('Reshape', ['position_ids', g.i64([-1])]);
  let x = g.op1('Gather', [embed, ids], { axis: attr.int(0) }); // [S, hidden]

  const seqLen = g.op1('Shape', ['input_ids'], { start: attr.int(1), end: attr.int(2) }); // [1]
  const pastLen = g.op1('Shape', [kvNames(0).pastKey], { start: attr.int(2), end: attr.int(3) }); // [1]
  const totalLen = g.op1('Add', [pastLen, seqLen]);

  let cosQK = '';
  let sinQK = '';
  let swapIdx = '';
  let mask = '';
  let seqlensK = '';
  let totalI32 = '';
  let cosCache = '';
  let sinCache = '';
  if (o.attention === 'standard') {
    const full = ropeTables(config, o.maxPositions, true);
    const cosT = g.f32(full.cos, [o.maxPositions, D]);
    const sinT = g.f32(full.sin, [o.maxPositions, D]);
    // Per-head factor: the queries' 1/sqrt(d) rides on their RoPE tables (one Mul less per layer).
    const headScale = g.f32(
      Float32Array.from({ length: H + KVH }, (_, i) => (i < H ? 1 / Math.sqrt(D) : 1)),
      [1, H + KVH, 1],
    );
    const cosRows = g.op1('Unsqueeze', [g.op1('Gather', [cosT, pos], { axis: attr.int(0) }), g.i64([1])]); // [S, 1, D]
    const sinRows = g.op1('Unsqueeze', [g.op1('Gather', [sinT, pos], { axis: attr.int(0) }), g.i64([1])]);
    cosQK = g.op1('Mul', [cosRows, headScale]); // [S, H + KVH, D]
    sinQK = g.op1('Mul', [sinRows, headScale]);
    swapIdx = g.i64(Array.from({ length: D }, (_, i) => (i + D / 2) % D));
    // Causal mask [group·S, T]: query i (absolute position P + i) sees keys 0..P + i.
    const zero = g.i64(0);
    const one = g.i64(1);
    const rows = g.op1('Range', [g.op1('Squeeze', [pastLen, g.i64([0])]), g.op1('Squeeze', [totalLen, g.i64([0])]), one]);
    const cols = g.op1('Range', [zero, g.op1('Squeeze', [totalLen, g.i64([0])]), one]);
    const future = g.op1('Greater', [g.op1('Unsqueeze', [cols, g.i64([0])]), g.op1('Unsqueeze', [rows, g.i64([1])])]);
    const bias = g.op1('Where', [future, g.f32(Number.NEGATIVE_INFINITY), g.f32(0)]);
    mask = group > 1 ? g.op1('Tile', [bias, g.i64([group, 1])]) : bias;
  } else {
    const half = ropeTables(config, o.maxPositions, false);
    cosCache = g.f32(half.cos, [o.maxPositions, D / 2]);
    sinCache = g.f32(half.sin, [o.maxPositions, D / 2]);
    totalI32 = g.op1('Cast', [g.op1('Squeeze', [totalLen, g.i64([0])])], { to: attr.int(DataType.INT32) }); // scalar
    seqlensK = g.op1('Cast', [g.op1('Sub', [totalLen, g.i64([1])])], { to: attr.int(DataType.INT32) }); // [1]
  }

  const groups = allGroups(config);
  const groupOf = (l: number, name: GroupLayout['group']) => groups.find((q) => q.layer === l && q.group === name) as GroupLayout;

  // LoRA inputs, one per family of equal dimension, split once into every group's factors.
  const factors = new Map<string, { a: string; bt: string; rowScale?: string }>();
  let lora: LoraInputs | undefined;
  if (o.lora) {
    const family = (kind: 'A' | 'BT', dimOf: (q: GroupLayout) => number): LoraFamily[] => {
      const dims = [...new Set(groups.map(dimOf))];
      return dims.map((dim) => {
        const members = groups.filter((q) => dimOf(q) === dim);
        const f: LoraFamily = {
          input: `lora_${kind}.${dim}`,
          ranks: `lora_${kind}.${dim}.ranks`,
          dim,
          groups: members.map((q) => q.prefix),
        };
        g.input(f.input, F, [`lora_rank_${kind}_${dim}`, dim]);
        g.input(f.ranks, DataType.INT64, [members.length]);
        const parts = g.op('Split', [f.input, f.ranks], { axis: attr.int(0) }, { numOutputs: members.length });
        members.forEach((q, i) => {
          const e = factors.get(q.prefix) ?? { a: '', bt: '' };
          e[kind === 'A' ? 'a' : 'bt'] = parts[i] as string;
          factors.set(q.prefix, e);
        });
        return f;
      });
    };
    lora = { a: family('A', (q) => q.in), b: family('BT', (q) => q.out) };
    if (o.rowScale) {
      lora.rowScale = g.input('lora_row_scale', F, [groups.reduce((n, q) => n + q.out, 0)]);
      const parts = g.op('Split', [lora.rowScale, g.i64(groups.map((q) => q.out))], { axis: attr.int(0) }, { numOutputs: groups.length });
      groups.forEach((q, i) => {
        (factors.get(q.prefix) as { rowScale?: string }).rowScale = parts[i] as string;
      });
    }
  }

  /** y = rowScale ⊙ (x Wᵀ + b) + (x Aᵀ) Bᵀ (+ residual), in as few nodes as the options allow. */
  const projection = (xIn: string, grp: GroupLayout, residual?: string): string => {
    const n = grp.names;
    const tensors = grp.members.map((m) => `${m.module}.weight`);
    let bias: string | undefined;
    if (grp.bias) {
      bias = weight(n.bias, F, [grp.out], { kind: 'f32', tensors: grp.members.map((m) => `${m.module}.bias`) }, fed);
    }
    const f = factors.get(grp.prefix);
    const loraT = f ? g.op1('Gemm', [xIn, f.a], { transB: attr.int(1) }) : undefined; // [S, rank]
    const loraBT = f?.bt; // [rank, out]
    const rowScale = f?.rowScale;

    let base: string;
    if (o.weights !== 'f32') {
      const bs = o.blockSize;
      if (o.weights === 'q4') {
        const blocks = q4Blocks(grp.in, bs);
        const q = (part: 'codes' | 'scales' | 'zeroPoints') =>
          ({ kind: 'q4', tensors, part, rows: grp.out, cols: grp.in, blockSize: bs }) as const;
        const codes = weight(n.codes4, DataType.UINT8, [grp.out, blocks, bs / 2], q('codes'), fed);
        const scales = weight(n.scales4, F, [grp.out * blocks], q('scales'), fed);
        const zps = weight(n.zeros4, DataType.UINT8, [grp.out * Math.ceil(blocks / 2)], q('zeroPoints'), fed);
        base = g.op1(
          'MatMulNBits',
          [xIn, codes, scales, zps],
          { K: attr.int(grp.in), N: attr.int(grp.out), bits: attr.int(4), block_size: attr.int(bs), accuracy_level: attr.int(0) },
          MS_DOMAIN,
        );
      } else {
        const numel = grp.out * grp.in;
        const codes = weight(n.codes4, DataType.UINT8, [Math.ceil(numel / 2)], { kind: 'nf4', tensors, part: 'codes', blockSize: bs }, fed);
        const absmax = weight(n.scales4, F, [Math.ceil(numel / bs)], { kind: 'nf4', tensors, part: 'absmax', blockSize: bs }, fed);
        base = g.op1(
          'MatMulBnb4',
          [xIn, codes, absmax],
          { K: attr.int(grp.in), N: attr.int(grp.out), block_size: attr.int(bs), quant_type: attr.int(1) },
          MS_DOMAIN,
        );
      }
      if (bias) base = g.op1('Add', [base, bias]);
      if (rowScale) base = g.op1('Mul', [base, rowScale]);
      if (loraT && loraBT) base = g.op1('Gemm', [loraT, loraBT, base]);
      return residual ? g.op1('Add', [base, residual]) : base;
    }
    const W = weight(n.weight, F, [grp.out, grp.in], { kind: 'f32', tensors }, fed);
    if (rowScale) {
      base = g.op1('Gemm', bias ? [xIn, W, bias] : [xIn, W], { transB: attr.int(1) });
      base = g.op1('Mul', [base, rowScale]);
      if (loraT && loraBT) base = g.op1('Gemm', [loraT, loraBT, base]);
      return residual ? g.op1('Add', [base, residual]) : base;
    }
    // No row scale: the residual and the bias ride on Gemm's C input.
    let acc = residual;
    if (bias) acc = acc ? g.op1('Add', [acc, bias]) : bias;
    if (loraT && loraBT) acc = g.op1('Gemm', acc ? [loraT, loraBT, acc] : [loraT, loraBT]);
    return g.op1('Gemm', acc ? [xIn, W, acc] : [xIn, W], { transB: attr.int(1) });
  };

  const norm = (xIn: string, name: string): string => {
    const w = weight(name, F, [hidden], { kind: 'f32', tensors: [name] }, false);
    return g.op1('RMSNormalization', [xIn, w], { epsilon: attr.float(config.rmsNormEps), axis: attr.int(-1) });
  };

  const qDim = H * D;
  const kvDim = KVH * D;
  for (let l = 0; l < config.numLayers; l++) {
    const kv = kvNames(l);
    const xn = norm(x, `model.layers.${l}.input_layernorm.weight`);
    const qkv = projection(xn, groupOf(l, 'qkv_proj')); // [S, qDim + 2·kvDim]
    let ctx: string; // [S, qDim]
    if (o.attention === 'contrib') {
      const packed = g.op1('Unsqueeze', [qkv, g.i64([0])]);
      const [att] = g.op(
        'GroupQueryAttention',
        [packed, '', '', kv.pastKey, kv.pastValue, seqlensK, totalI32, cosCache, sinCache],
        { num_heads: attr.int(H), kv_num_heads: attr.int(KVH), do_rotary: attr.int(1), rotary_interleaved: attr.int(0) },
        { domain: MS_DOMAIN, outputs: [g.fresh('gqa'), kv.presentKey, kv.presentValue] },
      );
      ctx = g.op1('Reshape', [att as string, g.i64([-1, qDim])]);
    } else {
      const [qk, v] = g.op('Split', [qkv, g.i64([qDim + kvDim, kvDim])], { axis: attr.int(1) }, { numOutputs: 2 }) as [string, string];
      const qk3 = g.op1('Reshape', [qk, g.i64([-1, H + KVH, D])]);
      const swapped = g.op1('Gather', [qk3, swapIdx], { axis: attr.int(2) });
      const rot = g.op1('Add', [g.op1('Mul', [qk3, cosQK]), g.op1('Mul', [swapped, sinQK])]); // [S, H + KVH, D]
      const [q, k] = g.op('Split', [rot, g.i64([H, KVH])], { axis: attr.int(1) }, { numOutputs: 2 }) as [string, string];
      // Queries [KVH, group·S, D]: heads kvh·group + j share kv head kvh.
      const q4 = g.op1('Reshape', [g.op1('Transpose', [q], { perm: attr.ints([1, 0, 2]) }), g.i64([1, KVH, -1, D])]);
      const kNew = g.op1('Unsqueeze', [g.op1('Transpose', [k], { perm: attr.ints([1, 0, 2]) }), g.i64([0])]);
      const vNew = g.op1('Unsqueeze', [
        g.op1('Transpose', [g.op1('Reshape', [v, g.i64([-1, KVH, D])])], { perm: attr.ints([1, 0, 2]) }),
        g.i64([0]),
      ]);
      g.op('Concat', [kv.pastKey, kNew], { axis: attr.int(2) }, { outputs: [kv.presentKey] });
      g.op('Concat', [kv.pastValue, vNew], { axis: attr.int(2) }, { outputs: [kv.presentValue] });
      const kT = g.op1('Transpose', [kv.presentKey], { perm: attr.ints([0, 1, 3, 2]) });
      const scores = g.op1('Add', [g.op1('MatMul', [q4, kT]), mask]); // [1, KVH, group·S, T]
      const probs = g.op1('Softmax', [scores], { axis: attr.int(-1) });
      const heads = g.op1('Reshape', [g.op1('MatMul', [probs, kv.presentValue]), g.i64([H, -1, D])]); // [H, S, D]
      ctx = g.op1('Reshape', [g.op1('Transpose', [heads], { perm: attr.ints([1, 0, 2]) }), g.i64([-1, qDim])]);
    }
    x = projection(ctx, groupOf(l, 'o_proj'), x);
    const xn2 = norm(x, `model.layers.${l}.post_attention_layernorm.weight`);
    const gu = projection(xn2, groupOf(l, 'gate_up_proj'));
    const [gate, up] = g.op(
      'Split',
      [gu, g.i64([config.intermediateSize, config.intermediateSize])],
      { axis: attr.int(1) },
      { numOutputs: 2 },
    ) as [string, string];
    const act = g.op1('Mul', [g.op1('Mul', [gate, g.op1('Sigmoid', [gate])]), up]);
    x = projection(act, groupOf(l, 'down_proj'), x);
  }

  let xf = norm(x, 'model.norm.weight');
  if (o.logits === 'last') xf = g.op1('Slice', [xf, g.i64([-1]), g.i64([2 ** 53]), g.i64([0])]); // [1, hidden]
  const head = config.tieWordEmbeddings
    ? embed
    : weight('lm_head.weight', F, [config.vocabSize, hidden], { kind: 'f32', tensors: ['lm_head.weight'] }, false);
  const logits = g.op1('Unsqueeze', [g.op1('Gemm', [xf, head], { transB: attr.int(1) }), g.i64([0])]);
  g.output('logits', logits, F, [1, o.logits === 'last' ? 1 : 'sequence_length', config.vocabSize]);
  for (let l = 0; l < config.numLayers; l++) {
    const kv = kvNames(l);
    g.outputs.push({ name: kv.presentKey, elemType: F, shape: [1, KVH, 'total_sequence_length', D] });
    g.outputs.push({ name: kv.presentValue, elemType: F, shape: [1, KVH, 'total_sequence_length', D] });
  }

  const model = g.model(
    [
      { domain: '', version: 23 },
      { domain: MS_DOMAIN, version: 1 },
    ],
    {
      irVersion: 11,
      metadata: {
        'lora_edge.model_type': config.modelType,
        'lora_edge.attention': o.attention,
        'lora_edge.weights': o.weights,
        'lora_edge.lora': String(o.lora),
      },
    },
  );
  const graph: DecoderGraph = {
    model,
    config,
    options: o,
    groups,
    weights: { location: o.externalDataName, byteLength: cursor, entries },
    fedWeights,
  };
  if (lora) graph.lora = lora;
  return graph;
}
