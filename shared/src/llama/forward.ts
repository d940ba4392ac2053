import { LoraEdgeError } from '../errors.ts';
import type { Linear, LlamaWeights } from './weights.ts';

/**
 * A reference Llama-family decoder in plain TypeScript: one token at a time over a KV cache,
 * float64 accumulation. It defines the numbers the fast engines are checked against and runs
 * anywhere (Workers included) for tiny models.
 */
export class KvCache {
  readonly k: Float32Array[];
  readonly v: Float32Array[];
  length = 0;

  constructor(
    readonly layers: number,
    readonly capacity: number,
    readonly kvDim: number,
  ) {
    this.k = Array.from({ length: layers }, () => new Float32Array(capacity * kvDim));
    this.v = Array.from({ length: layers }, () => new Float32Array(capacity * kvDim));
  }
}

export function newCache(w: LlamaWeights, capacity = w.config.maxPositions): KvCache {
  return new KvCache(w.config.numLayers, capacity, w.config.numKvHeads * w.config.headDim);
}

/** y = W x (+ b) (+ LoRA stack): rowScale ⊙ (W x) + B (A x). */
export function linear(lin: Linear, x: Float32Array, y = new Float32Array(lin.out)): Float32Array {
  const { W, out, in: inF, bias, lora } = lin;
  for (let i = 0; i < out; i++) {
    let s = 0;
    const row = i * inF;
    for (let j = 0; j < inF; j++) s += (W[row + j] as number) * (x[j] as number);
    y[i] = s;
  }
  if (lora) {
    const t = new Float64Array(lora.rank);
    for (let k = 0; k < lora.rank; k++) {
      let s = 0;
      for (let j = 0; j < inF; j++) s += (lora.A[k * inF + j] as number) * (x[j] as number);
      t[k] = s;
    }
    for (let i = 0; i < out; i++) {
      let s = (y[i] as number) * (lora.rowScale ? (lora.rowScale[i] as number) : 1);
      for (let k = 0; k < lora.rank; k++) s += (lora.B[i * lora.rank + k] as number) * (t[k] as number);
      y[i] = s;
    }
  }
  if (bias) for (let i = 0; i < out; i++) y[i] = (y[i] as number) + (bias[i] as number);
  return y;
}

function rmsNorm(x: Float32Array, w: Float32Array, eps: number): Float32Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += (x[i] as number) ** 2;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * inv * (w[i] as number));
}

/** Hugging Face rotate_half RoPE on each head of `v` (heads × headDim), in place. */
function rope(v: Float32Array, heads: number, headDim: number, pos: number, theta: number): void {
  const half = headDim / 2;
  for (let i = 0; i < half; i++) {
    const angle = pos * theta ** ((-2 * i) / headDim);
    const c = Math.cos(angle);
    const s = Math.sin(angle);
    for (let h = 0; h < heads; h++) {
      const a = h * headDim + i;
      const b = a + half;
      const x0 = v[a] as number;
      const x1 = v[b] as number;
      v[a] = x0 * c - x1 * s;
      v[b] = x1 * c + x0 * s;
    }
  }
}

/** Runs one token at position cache.length; returns the logits. */
export function forwardToken(w: LlamaWeights, cache: KvCache, token: number): Float32Array {
  const c = w.config;
  if (!Number.isInteger(token) || token < 0 || token >= c.vocabSize) {
    throw new LoraEdgeError('invalid_argument', `token id ${token} is outside the vocabulary (0..${c.vocabSize - 1})`);
  }
  const pos = cache.length;
  if (pos >= cache.capacity) throw new LoraEdgeError('invalid_argument', `position ${pos} exceeds the context of ${cache.capacity}`);
  const h = c.hiddenSize;
  const hd = c.headDim;
  const kvDim = c.numKvHeads * hd;
  const group = c.numHeads / c.numKvHeads;
  const x = w.embed.slice(token * h, (token + 1) * h);
  const scale = 1 / Math.sqrt(hd);
  for (let l = 0; l < c.numLayers; l++) {
    const layer = w.layers[l]!;
    const xn = rmsNorm(x, layer.inputNorm, c.rmsNormEps);
    const q = linear(layer.proj.q_proj, xn);
    const k = linear(layer.proj.k_proj, xn);
    const v = linear(layer.proj.v_proj, xn);
    rope(q, c.numHeads, hd, pos, c.ropeTheta);
    rope(k, c.numKvHeads, hd, pos, c.ropeTheta);
    cache.k[l]!.set(k, pos * kvDim);
    cache.v[l]!.set(v, pos * kvDim);
    const att = new Float32Array(c.numHeads * hd);
    const scores = new Float64Array(pos + 1);
    for (let head = 0; head < c.numHeads; head++) {
      const kvh = Math.floor(head / group);
      let max = Number.NEGATIVE_INFINITY;
      for (let t = 0; t <= pos; t++) {
        let s = 0;
        for (let i = 0; i < hd; i++) s += (q[head * hd + i] as number) * (cache.k[l]![t * kvDim + kvh * hd + i] as number);
        scores[t] = s * scale;
        max = Math.max(max, s * scale);
      }
      let sum = 0;
      for (let t = 0; t <= pos; t++) {
        scores[t] = Math.exp((scores[t] as number) - max);
        sum += scores[t] as number;
      }
      for (let i = 0; i < hd; i++) {
        let s = 0;
        for (let t = 0; t <= pos; t++) s += (scores[t] as number) * (cache.v[l]![t * kvDim + kvh * hd + i] as number);
        att[head * hd + i] = s / sum;
      }
    }
    const o = linear(layer.proj.o_proj, att);
    for (let i = 0; i < h; i++) x[i] = (x[i] as number) + (o[i] as number);
    const xn2 = rmsNorm(x, layer.postNorm, c.rmsNormEps);
    const gate = linear(layer.proj.gate_proj, xn2);
    const up = linear(layer.proj.up_proj, xn2);
    for (let i = 0; i < gate.length; i++) {
      const g = gate[i] as number;
      gate[i] = (g / (1 + Math.exp(-g))) * (up[i] as number);
    }
    const down = linear(layer.proj.down_proj, gate);
    for (let i = 0; i < h; i++) x[i] = (x[i] as number) + (down[i] as number);
  }
  cache.length = pos + 1;
  const xf = rmsNorm(x, w.norm, c.rmsNormEps);
  return linear({ W: w.lmHead, out: c.vocabSize, in: h }, xf);
}

export function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if ((v[i] as number) > (v[best] as number)) best = i;
  return best;
}

/** Greedy continuation of `prompt` (never stops early); also returns the logits at the last prompt position. */
export function greedy(w: LlamaWeights, prompt: readonly number[], n: number): { ids: number[]; firstLogits: Float32Array } {
  if (prompt.length === 0) throw new LoraEdgeError('invalid_argument', 'the prompt is empty');
  const cache = newCache(w, Math.min(w.config.maxPositions, prompt.length + n));
  let logits: Float32Array = new Float32Array(0);
  for (const t of prompt) logits = forwardToken(w, cache, t);
  const firstLogits = logits;
  const ids: number[] = [];
  for (let i = 0; i < n; i++) {
    const next = argmax(logits);
    ids.push(next);
    if (i + 1 < n) logits = forwardToken(w, cache, next);
  }
  return { ids, firstLogits };
}
