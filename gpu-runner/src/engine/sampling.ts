import { LoraEdgeError } from '@lora-edge/shared';

export interface SamplingParams {
  /** 0 (default) = greedy. */
  temperature?: number;
  /** Keep the k most likely tokens (0 or undefined = all). */
  topK?: number;
  /** Keep the smallest set whose probability reaches p (1 or undefined = all). */
  topP?: number;
  /** Seed of this request's random stream; the same seed gives the same tokens. */
  seed?: number;
}

export function validateSampling(p: SamplingParams): void {
  const bad = (field: string, why: string) => new LoraEdgeError('invalid_argument', why, { field });
  if (p.temperature !== undefined && !(Number.isFinite(p.temperature) && p.temperature >= 0))
    throw bad('temperature', 'temperature must be ≥ 0');
  if (p.topK !== undefined && !(Number.isInteger(p.topK) && p.topK >= 0)) throw bad('top_k', 'top_k must be a non-negative integer');
  if (p.topP !== undefined && !(p.topP > 0 && p.topP <= 1)) throw bad('top_p', 'top_p must be in (0, 1]');
  if (p.seed !== undefined && !Number.isSafeInteger(p.seed)) throw bad('seed', 'seed must be an integer');
}

/** A small, fast, seedable PRNG (SplitMix32-style mixing over a Weyl sequence): deterministic across platforms. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = (seed ^ 0x9e3779b9) >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x9e3779b9) >>> 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    z = (z ^ (z >>> 16)) >>> 0;
    return z / 2 ** 32;
  }
}

export function argmax(logits: Float32Array): number {
  let best = 0;
  let bv = logits[0] as number;
  for (let i = 1; i < logits.length; i++) {
    const v = logits[i] as number;
    if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}

/** Picks the next token: argmax at temperature 0, else softmax(logits / T) restricted by top-k then top-p. */
export function sample(logits: Float32Array, p: SamplingParams, rng: Rng): number {
  const t = p.temperature ?? 0;
  if (t === 0) return argmax(logits);
  const ids = Array.from({ length: logits.length }, (_, i) => i).sort((a, b) => (logits[b] as number) - (logits[a] as number));
  const k = p.topK && p.topK > 0 ? Math.min(p.topK, ids.length) : ids.length;
  const max = logits[ids[0] as number] as number;
  const probs: number[] = [];
  let sum = 0;
  for (let i = 0; i < k; i++) {
    const e = Math.exp(((logits[ids[i] as number] as number) - max) / t);
    probs.push(e);
    sum += e;
  }
  let keep = k;
  const topP = p.topP ?? 1;
  if (topP < 1) {
    let acc = 0;
    for (let i = 0; i < k; i++) {
      acc += (probs[i] as number) / sum;
      if (acc >= topP) {
        keep = i + 1;
        break;
      }
    }
  }
  let total = 0;
  for (let i = 0; i < keep; i++) total += probs[i] as number;
  let u = rng.next() * total;
  for (let i = 0; i < keep; i++) {
    u -= probs[i] as number;
    if (u < 0) return ids[i] as number;
  }
  return ids[keep - 1] as number;
}
