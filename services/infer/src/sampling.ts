/**
 * Next-token choice: argmax at temperature 0; otherwise softmax(logits / T) cut to the top-k,
 * then to the smallest prefix reaching top-p, drawn with a seeded generator (same seed, same
 * tokens, on every platform).
 */
export interface Sampling {
  temperature: number;
  /** 0 = no cut. */
  topK: number;
  /** 1 = no cut. */
  topP: number;
  seed: number;
}

/** xorshift128+ over two 32-bit halves seeded by SplitMix32: deterministic and cheap. */
export class SeededRandom {
  private a: number;
  private b: number;
  constructor(seed: number) {
    let s = (seed >>> 0) ^ Math.floor(seed / 2 ** 32);
    const mix = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = mix() | 1;
    this.b = mix();
  }
  /** Uniform in [0, 1). */
  next(): number {
    let x = this.a;
    const y = this.b;
    this.a = y;
    x ^= x << 23;
    x ^= x >>> 17;
    x ^= y ^ (y >>> 26);
    this.b = x >>> 0;
    return ((this.a + this.b) >>> 0) / 2 ** 32;
  }
}

export function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if ((v[i] as number) > (v[best] as number)) best = i;
  return best;
}

export function sampleToken(logits: Float32Array, s: Sampling, rng: SeededRandom): number {
  if (s.temperature === 0 || s.topK === 1) return argmax(logits);
  const n = logits.length;
  const k = s.topK > 0 ? Math.min(s.topK, n) : n;
  // Candidates by descending logit (ties by id, so the order is the same everywhere).
  const ids = Array.from({ length: n }, (_, i) => i).sort((x, y) => (logits[y] as number) - (logits[x] as number) || x - y);
  const top = ids.slice(0, k);
  const max = logits[top[0] as number] as number;
  const p = top.map((i) => Math.exp(((logits[i] as number) - max) / s.temperature));
  const total = p.reduce((a, b) => a + b, 0);
  let keep = top.length;
  if (s.topP < 1) {
    let acc = 0;
    for (let i = 0; i < top.length; i++) {
      acc += (p[i] as number) / total;
      if (acc >= s.topP) {
        keep = i + 1;
        break;
      }
    }
  }
  let mass = 0;
  for (let i = 0; i < keep; i++) mass += p[i] as number;
  let u = rng.next() * mass;
  for (let i = 0; i < keep; i++) {
    u -= p[i] as number;
    if (u < 0) return top[i] as number;
  }
  return top[keep - 1] as number;
}
