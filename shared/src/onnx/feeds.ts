import { LoraEdgeError, withPlace } from '../errors.ts';
import { fuseModule } from '../lora/fuse.ts';
import type { DeltaTerm } from '../lora/terms.ts';
import { type StackedLora, stackTerms } from '../lora/unmerged.ts';
import { type Tensor, toFloat32 } from '../tensor/tensor.ts';
import type { DecoderGraph } from './decoder-graph.ts';
import { findMember, type GroupLayout } from './layout.ts';
import type { TensorSource } from './weights.ts';
import { entryBytes } from './weights.ts';

/** A graph input as plain data; the runtime wraps it in its own tensor type (no copy). */
export interface FeedTensor {
  type: 'float32' | 'int64' | 'uint8';
  data: Float32Array | BigInt64Array | Uint8Array;
  dims: number[];
}
export type Feeds = Record<string, FeedTensor>;

/** The inputs that put an adapter setting on the shared graph, made once per mix and reused for every run. */
export interface AdapterFeeds {
  mode: 'base' | 'merged' | 'unmerged';
  feeds: Feeds;
  /** Bytes the feeds hold (copied into the runtime on every run). */
  bytes: number;
  /** Total stacked rank per group prefix (unmerged). */
  ranks: Record<string, number>;
}

export const BASE_FEEDS: AdapterFeeds = Object.freeze({ mode: 'base', feeds: {}, bytes: 0, ranks: {} }) as AdapterFeeds;

const f32 = (data: Float32Array, dims: number[]): FeedTensor => ({ type: 'float32', data, dims });

/**
 * What every run feeds when no adapter says otherwise: rank-0 LoRA factors, unit row scales and,
 * for graphs with fed projection weights, the base weights (made once from `base`).
 */
export function defaultFeeds(graph: DecoderGraph, base?: TensorSource): Feeds {
  const feeds: Feeds = {};
  if (graph.lora) {
    for (const fam of [...graph.lora.a, ...graph.lora.b]) {
      feeds[fam.input] = f32(new Float32Array(0), [0, fam.dim]);
      feeds[fam.ranks] = { type: 'int64', data: new BigInt64Array(fam.groups.length), dims: [fam.groups.length] };
    }
    if (graph.lora.rowScale) feeds[graph.lora.rowScale] = f32(rowScaleOnes(graph), [graph.groups.reduce((n, q) => n + q.out, 0)]);
  }
  if (graph.fedWeights.length) {
    if (!base) throw new LoraEdgeError('invalid_argument', 'this graph takes its projection weights as inputs: pass the base tensors');
    const cache = new Map<string, unknown>();
    for (const e of graph.fedWeights) feeds[e.name] = graphInputFeed(graph, e.name, entryBytes(graph, base, e, cache));
  }
  return feeds;
}

function rowScaleOnes(graph: DecoderGraph): Float32Array {
  return new Float32Array(graph.groups.reduce((n, q) => n + q.out, 0)).fill(1);
}

/** One group's stacked factors: A [R, in] and Bᵀ [R, out]. */
interface GroupStack {
  R: number;
  A: Float32Array;
  BT: Float32Array;
}

/** Packs per-group stacks into the family inputs (only families with a touched group are fed). */
function packFamilies(graph: DecoderGraph, stacks: ReadonlyMap<string, GroupStack>, feeds: Feeds): number {
  let bytes = 0;
  const lora = graph.lora as NonNullable<DecoderGraph['lora']>;
  for (const [fams, part] of [
    [lora.a, 'A'],
    [lora.b, 'BT'],
  ] as const) {
    for (const fam of fams) {
      if (!fam.groups.some((p) => stacks.has(p))) continue;
      const ranks = BigInt64Array.from(fam.groups, (p) => BigInt(stacks.get(p)?.R ?? 0));
      const rows = fam.groups.reduce((n, p) => n + (stacks.get(p)?.R ?? 0), 0);
      const data = new Float32Array(rows * fam.dim);
      let off = 0;
      for (const p of fam.groups) {
        const st = stacks.get(p);
        if (!st) continue;
        data.set(st[part], off);
        off += st[part].length;
      }
      feeds[fam.input] = f32(data, [rows, fam.dim]);
      feeds[fam.ranks] = { type: 'int64', data: ranks, dims: [ranks.length] };
      bytes += data.byteLength + ranks.byteLength;
    }
  }
  return bytes;
}

/** Groups the adapter touches, with each member's terms; refuses modules the graph has no slot for. */
function touchedGroups(
  graph: DecoderGraph,
  terms: ReadonlyMap<string, readonly DeltaTerm[]>,
): Map<GroupLayout, Map<string, readonly DeltaTerm[]>> {
  const out = new Map<GroupLayout, Map<string, readonly DeltaTerm[]>>();
  for (const [module, t] of terms) {
    if (!t.length) continue;
    const hit = findMember(graph.groups, module);
    if (!hit) {
      throw new LoraEdgeError(
        'adapter_unsupported',
        `the decoder graph has no LoRA slot for ${module} (projections of layers 0..${graph.config.numLayers - 1} only)`,
        {
          field: t[0]?.source,
        },
      );
    }
    const m = out.get(hit.group) ?? new Map<string, readonly DeltaTerm[]>();
    m.set(module, t);
    out.set(hit.group, m);
  }
  return out;
}

function baseWeight(base: TensorSource, module: string): Float32Array {
  const t = base(`${module}.weight`);
  if (!t) throw new LoraEdgeError('model_weights_invalid', 'missing', { tensor: `${module}.weight` });
  if (!['F32', 'F16', 'BF16', 'F64'].includes(t.dtype)) {
    throw new LoraEdgeError(
      'adapter_unsupported',
      `the base weight is stored as ${t.dtype}: this needs the float weight (serve it unmerged)`,
      {
        tensor: `${module}.weight`,
      },
    );
  }
  return toFloat32(t);
}

/**
 * Unmerged: per touched group, the members' stacks side by side. A = [A_q; A_k; A_v] ([R, in],
 * every adapter's rows of every member), Bᵀ block-structured ([R, out]: member m's rows of B
 * only see its own columns), with mix weight × scaling folded into B and DoRA's factor into
 * rowScale. One shrink and one expand matmul per group, whatever the number of adapters.
 */
export function unmergedFeeds(graph: DecoderGraph, terms: ReadonlyMap<string, readonly DeltaTerm[]>, base?: TensorSource): AdapterFeeds {
  if (!graph.lora)
    throw new LoraEdgeError('invalid_argument', 'this graph was built without LoRA inputs (lora: false): serve the adapter merged');
  const feeds: Feeds = {};
  const ranks: Record<string, number> = {};
  const stacks = new Map<string, GroupStack>();
  let rowScale: Float32Array | undefined;
  for (const [grp, members] of touchedGroups(graph, terms)) {
    const parts: { row: number; rows: number; s: StackedLora }[] = [];
    for (const m of grp.members) {
      const t = members.get(m.module);
      if (!t) continue;
      const needsW = t.some((x) => x.magnitude);
      if (needsW && !base) throw new LoraEdgeError('invalid_argument', `${m.module}: a DoRA term needs the base weights`);
      const W = needsW && base ? baseWeight(base, m.module) : undefined;
      parts.push({ row: m.row, rows: m.rows, s: withPlace({ tensor: m.module }, () => stackTerms(W, m.rows, grp.in, t)) });
    }
    const R = parts.reduce((a, x) => a + x.s.rank, 0);
    const A = new Float32Array(R * grp.in);
    const BT = new Float32Array(R * grp.out);
    let col = 0;
    for (const { row, rows, s } of parts) {
      A.set(s.A, col * grp.in);
      for (let i = 0; i < rows; i++) for (let k = 0; k < s.rank; k++) BT[(col + k) * grp.out + row + i] = s.B[i * s.rank + k] as number;
      if (s.rowScale) {
        if (!graph.lora.rowScale)
          throw new LoraEdgeError('adapter_unsupported', 'DoRA needs row-scale inputs: this graph was built without them');
        rowScale ??= rowScaleOnes(graph);
        rowScale.set(s.rowScale, groupRowOffset(graph, grp) + row);
      }
      col += s.rank;
    }
    stacks.set(grp.prefix, { R, A, BT });
    ranks[grp.prefix] = R;
  }
  let bytes = packFamilies(graph, stacks, feeds);
  if (rowScale && graph.lora.rowScale) {
    feeds[graph.lora.rowScale] = f32(rowScale, [rowScale.length]);
    bytes += rowScale.byteLength;
  }
  return { mode: 'unmerged', feeds, bytes, ranks };
}

/** Where a group's rows start in the concatenated row-scale input. */
function groupRowOffset(graph: DecoderGraph, grp: GroupLayout): number {
  let off = 0;
  for (const q of graph.groups) {
    if (q === grp) return off;
    off += q.out;
  }
  throw new Error(`group ${grp.prefix} is not in this graph`);
}

/**
 * The checkpoint with `terms` fused into every module they touch (W' = W + Σ ΔW, PEFT's merge):
 * a source for buildWeightData (a merged model as a session of its own) or for mergedFeeds.
 */
export function fuseSource(graph: DecoderGraph, terms: ReadonlyMap<string, readonly DeltaTerm[]>, base: TensorSource): TensorSource {
  const fused = new Map<string, Tensor>();
  for (const [grp, members] of touchedGroups(graph, terms)) {
    for (const [module, t] of members) {
      const m = grp.members.find((x) => x.module === module);
      if (!m) continue;
      const w = withPlace({ tensor: module }, () => fuseModule(baseWeight(base, module), m.rows, grp.in, t));
      fused.set(`${module}.weight`, { dtype: 'F32', shape: [m.rows, grp.in], data: new Uint8Array(w.buffer, w.byteOffset, w.byteLength) });
    }
  }
  return (name) => fused.get(name) ?? base(name);
}

/**
 * Merged: every touched group's weight re-made from the fused checkpoint (4-bit graphs
 * quantize the merged float weight once), fed in place of the base weight.
 */
export function mergedFeeds(graph: DecoderGraph, terms: ReadonlyMap<string, readonly DeltaTerm[]>, base: TensorSource): AdapterFeeds {
  if (graph.options.projectionWeights !== 'input') {
    throw new LoraEdgeError(
      'invalid_argument',
      "this graph holds its projection weights as constants: merged weights need projectionWeights: 'input'",
    );
  }
  const source = fuseSource(graph, terms, base);
  const feeds: Feeds = {};
  let bytes = 0;
  const cache = new Map<string, unknown>();
  for (const grp of touchedGroups(graph, terms).keys()) {
    for (const e of graph.fedWeights) {
      if (!e.name.startsWith(`${grp.prefix}.`) || e.name.endsWith('.bias')) continue;
      const b = entryBytes(graph, source, e, cache);
      feeds[e.name] = graphInputFeed(graph, e.name, b);
      bytes += b.byteLength;
    }
  }
  return { mode: 'merged', feeds, bytes, ranks: {} };
}

/** Wraps initializer bytes as a feed of that initializer's type and dims. */
function graphInputFeed(graph: DecoderGraph, name: string, b: Uint8Array): FeedTensor {
  const input = graph.model.graph.inputs.find((i) => i.name === name);
  if (!input) throw new LoraEdgeError('invalid_argument', `${name} is not an input of this graph`);
  if (input.shape.some((d) => typeof d !== 'number')) throw new Error(`${name} has symbolic dims`);
  const dims = input.shape as number[];
  if (input.elemType === 1) return f32(new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4), dims);
  return { type: 'uint8', data: b, dims };
}
