import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JsBackend } from './js.ts';
import { createNativeBackend } from './native.ts';
import { expectClose, Rng } from './testing.ts';

const native = createNativeBackend();
const js = new JsBackend();
const ISAS = (['avx512', 'avx2', 'portable'] as const).filter((isa) => {
  try {
    native.setIsa(isa);
    return true;
  } catch {
    return false;
  }
});
native.setIsa('auto');

describe('rmsnorm', () => {
  it.each([
    [1, 1],
    [3, 37],
    [17, 768],
    [64, 65],
  ])('n=%i dim=%i, into y and in place', (n, dim) => {
    const rng = new Rng(n * dim);
    const x = rng.f32(n * dim, 3);
    const w = rng.f32(dim);
    const eps = 1e-5;
    const ref = new Float64Array(n * dim);
    for (let i = 0; i < n; i++) {
      let ss = 0;
      for (let j = 0; j < dim; j++) ss += (x[i * dim + j] as number) ** 2;
      const inv = 1 / Math.sqrt(ss / dim + eps);
      for (let j = 0; j < dim; j++) ref[i * dim + j] = (x[i * dim + j] as number) * inv * (w[j] as number);
    }
    const mag = ref.map(Math.abs);
    for (const be of [native, js]) {
      const y = new Float32Array(n * dim);
      be.rmsnorm(y, x, n, dim, w, eps);
      expectClose(y, ref, mag, 1e-6, `${be.name} rmsnorm`);
      const inPlace = x.slice();
      be.rmsnorm(inPlace, inPlace, n, dim, w, eps);
      expectClose(inPlace, ref, mag, 1e-6, `${be.name} rmsnorm in place`);
    }
  });
});

describe('rope', () => {
  it.each([
    [1, 1, 2, 10000],
    [3, 4, 64, 10000],
    [17, 3, 6, 500000],
    [64, 2, 16, 10000],
  ])('n=%i heads=%i headDim=%i theta=%i', (n, heads, headDim, theta) => {
    const rng = new Rng(n + heads * headDim);
    const x = rng.f32(n * heads * headDim);
    const positions = Int32Array.from({ length: n }, () => rng.int(5000));
    positions[0] = 0;
    const half = headDim / 2;
    const ref = new Float64Array(x.length);
    const mag = new Float64Array(x.length);
    for (let r = 0; r < n; r++) {
      for (let h = 0; h < heads; h++) {
        for (let i = 0; i < half; i++) {
          const invFreq = 1 / theta ** ((2 * i) / headDim);
          const a = (positions[r] as number) * invFreq;
          const o = (r * heads + h) * headDim;
          const x0 = x[o + i] as number;
          const x1 = x[o + i + half] as number;
          // rotate_half: [x0, x1] → [x0 cos − x1 sin, x1 cos + x0 sin]
          ref[o + i] = x0 * Math.cos(a) - x1 * Math.sin(a);
          ref[o + i + half] = x1 * Math.cos(a) + x0 * Math.sin(a);
          mag[o + i] = mag[o + i + half] = Math.abs(x0) + Math.abs(x1);
        }
      }
    }
    for (const be of [native, js]) {
      const y = x.slice();
      be.rope(y, n, heads, headDim, positions, theta);
      expectClose(y, ref, mag, 1e-6, `${be.name} rope`);
    }
  });
});

describe.each(ISAS)('siluMul with the %s kernels', (isa) => {
  beforeAll(() => native.setIsa(isa));
  afterAll(() => native.setIsa('auto'));

  it.each([0, 1, 17, 1000, 70001])('len=%i', (len) => {
    const rng = new Rng(len + 1);
    const gate = rng.f32(len, 12);
    if (len > 3) {
      gate[0] = -100;
      gate[1] = 100;
      gate[2] = 0;
    }
    const up = rng.f32(len, 2);
    const ref = Float64Array.from(gate, (g, i) => (g / (1 + Math.exp(-g))) * (up[i] as number));
    for (const be of [native, js]) {
      const g = gate.slice();
      be.siluMul(g, up, len);
      expectClose(g, ref, ref.map(Math.abs), 1e-6, `${be.name} siluMul`);
    }
  });

  it('gate and up may be the same array', () => {
    const g = Float32Array.of(1, -2, 3);
    native.siluMul(g, g, 3);
    expectClose(g, [1 / (1 + Math.exp(-1)), 4 / (1 + Math.exp(2)), 9 / (1 + Math.exp(-3))], 10, 1e-7, 'aliased');
  });
});

/** Causal GQA attention in float64, with the error scale of each output. */
function refAttention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  nTokens: number,
  start: number,
  heads: number,
  kvHeads: number,
  hd: number,
) {
  const out = new Float64Array(nTokens * heads * hd);
  const mag = new Float64Array(out.length);
  const kvDim = kvHeads * hd;
  for (let t = 0; t < nTokens; t++) {
    for (let h = 0; h < heads; h++) {
      const kv = Math.floor(h / (heads / kvHeads)) * hd;
      const len = start + t + 1;
      const s = new Float64Array(len);
      let sens = 0;
      for (let j = 0; j < len; j++) {
        let d = 0;
        let a = 0;
        for (let c = 0; c < hd; c++) {
          const p = (q[(t * heads + h) * hd + c] as number) * (k[j * kvDim + kv + c] as number);
          d += p;
          a += Math.abs(p);
        }
        s[j] = d / Math.sqrt(hd);
        sens = Math.max(sens, a / Math.sqrt(hd));
      }
      const max = Math.max(...s);
      const p = s.map((x) => Math.exp(x - max));
      const sum = p.reduce((a, b) => a + b, 0);
      for (let c = 0; c < hd; c++) {
        let o = 0;
        let vmax = 0;
        for (let j = 0; j < len; j++) {
          o += (p[j] as number) * (v[j * kvDim + kv + c] as number);
          vmax = Math.max(vmax, Math.abs(v[j * kvDim + kv + c] as number));
        }
        out[(t * heads + h) * hd + c] = o / sum;
        // Scores carry f32 error ~ eps·Σ|q·k|; softmax turns it into relative error of the weights.
        mag[(t * heads + h) * hd + c] = vmax * (1 + sens);
      }
    }
  }
  return { out, mag };
}

describe.each(ISAS)('attention with the %s kernels', (isa) => {
  beforeAll(() => native.setIsa(isa));
  afterAll(() => native.setIsa('auto'));

  it.each([
    // nTokens, start, heads, kvHeads, headDim
    [1, 0, 1, 1, 1],
    [1, 40, 4, 4, 16],
    [3, 5, 6, 2, 33],
    [17, 0, 4, 1, 64],
    [64, 3, 8, 4, 32],
    [2, 300, 12, 12, 64],
  ])('nTokens=%i start=%i heads=%i kvHeads=%i headDim=%i', (nTokens, start, heads, kvHeads, hd) => {
    const rng = new Rng(nTokens * 100 + start);
    const capacity = start + nTokens + 3; // spare rows beyond the filled ones must be ignored
    const kvDim = kvHeads * hd;
    const q = rng.f32(nTokens * heads * hd, 2);
    const kCache = rng.f32(capacity * kvDim, 2);
    const vCache = rng.f32(capacity * kvDim);
    kCache.fill(Number.NaN, (start + nTokens) * kvDim);
    vCache.fill(Number.NaN, (start + nTokens) * kvDim);
    const { out: ref, mag } = refAttention(q, kCache, vCache, nTokens, start, heads, kvHeads, hd);
    for (const be of [native, js]) {
      const out = new Float32Array(nTokens * heads * hd).fill(Number.NaN);
      be.attention({ out, q, nTokens, kCache, vCache, start, heads, kvHeads, headDim: hd });
      expectClose(out, ref, mag, 1e-5, `${be.name} attention`);
    }
  });

  it('is stable for large scores (no overflow in exp)', () => {
    const hd = 8;
    const q = new Float32Array(hd).fill(100);
    const kCache = new Float32Array(3 * hd).fill(100);
    kCache.fill(-100, hd, 2 * hd);
    const vCache = Float32Array.from({ length: 3 * hd }, (_, i) => Math.floor(i / hd));
    const out = new Float32Array(hd);
    native.attention({ out, q, nTokens: 1, kCache, vCache, start: 2, heads: 1, kvHeads: 1, headDim: hd });
    // Keys 0 and 2 tie at a huge score, key 1 vanishes: the mean of values 0 and 2.
    for (const o of out) expect(o).toBeCloseTo(1, 6);
  });
});
