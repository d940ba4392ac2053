/**
 * The reference backend in plain TypeScript: simple loops, float64 accumulation, one rounding to
 * f32 per output. The native backend is tested against it, and it is the fallback when the
 * addon is not built. Arguments are checked by the same rules as the addon.
 */
import { atLeast, f32, finite, i32, int, noOverlap, object } from './checks.ts';
import { createJsLora, createJsWeight, decodeRow, JsLora, JsVeraProjection, JsWeight, liveLora, liveWeight } from './js-handles.ts';
import { createJsVera, createJsVeraProjection, loraRow } from './js-lora.ts';
import type {
  AttentionArgs,
  Backend,
  LoraHandle,
  LoraInit,
  VeraInit,
  VeraProjectionHandle,
  VeraProjectionInit,
  WeightHandle,
  WeightInit,
} from './types.ts';

export class JsBackend implements Backend {
  readonly name = 'js';

  createWeight(init: WeightInit): WeightHandle {
    return createJsWeight(init);
  }

  createLora(init: LoraInit): LoraHandle {
    return createJsLora(init);
  }

  createVeraProjection(init: VeraProjectionInit): VeraProjectionHandle {
    return createJsVeraProjection(init);
  }

  createVera(init: VeraInit): LoraHandle {
    return createJsVera(init);
  }

  release(h: WeightHandle | LoraHandle | VeraProjectionHandle): void {
    if (h instanceof JsWeight) {
      h.data = new Float32Array(0);
      h.released = true;
    } else if (h instanceof JsLora) {
      h.A = h.B = new Float32Array(0);
      h.rowScale = h.sparse = h.vera = undefined;
      h.released = true;
    } else if (h instanceof JsVeraProjection) {
      // Modules made from it keep their reference (as the native backend keeps its share).
      h.released = true;
    } else {
      throw new TypeError('release(handle): not a handle of the js backend');
    }
  }

  matmul(yArg: Float32Array, xArg: Float32Array, nArg: number, wArg: WeightHandle): void {
    const y = f32(yArg, 'matmul: y');
    const x = f32(xArg, 'matmul: x');
    const n = int(nArg, 'matmul: n', 0);
    const w = liveWeight(wArg, 'matmul: weight');
    atLeast(x, n * w.in, 'matmul: x');
    atLeast(y, n * w.out, 'matmul: y');
    noOverlap(y, n * w.out, 'matmul: y', x, n * w.in, 'x');
    const row = new Float64Array(w.in);
    for (let j = 0; j < w.out; j++) {
      decodeRow(w, j, row);
      for (let i = 0; i < n; i++) {
        let s = 0;
        const xo = i * w.in;
        for (let k = 0; k < w.in; k++) s += (row[k] as number) * (x[xo + k] as number);
        y[i * w.out + j] = s;
      }
    }
  }

  lora(yArg: Float32Array, xArg: Float32Array, nArg: number, slotsArg: Int32Array, handlesArg: readonly LoraHandle[]): void {
    const y = f32(yArg, 'lora: y');
    const x = f32(xArg, 'lora: x');
    const n = int(nArg, 'lora: n', 0);
    const slots = i32(slotsArg, 'lora: slots');
    atLeast(slots, n, 'lora: slots');
    if (!Array.isArray(handlesArg)) throw new TypeError('lora: handles must be an array of LoRA handles');
    const hs = handlesArg.map((h, k) => liveLora(h, `lora: handles[${k}]`));
    const h0 = hs[0];
    hs.forEach((h, k) => {
      if (h0 && (h.in !== h0.in || h.out !== h0.out)) {
        throw new RangeError(`lora: handles[${k}] maps ${h.in} → ${h.out} features but handles[0] maps ${h0.in} → ${h0.out}`);
      }
    });
    for (let i = 0; i < n; i++) {
      const s = slots[i] as number;
      if (s >= hs.length) throw new RangeError(`lora: slots[${i}] = ${s} but there are ${hs.length} handles`);
    }
    if (!h0) return;
    atLeast(x, n * h0.in, 'lora: x');
    atLeast(y, n * h0.out, 'lora: y');
    noOverlap(y, n * h0.out, 'lora: y', x, n * h0.in, 'x');
    for (let i = 0; i < n; i++) {
      const slot = slots[i] as number;
      if (slot >= 0) loraRow(hs[slot] as JsLora, x, i * h0.in, y, i * h0.out);
    }
  }

  rmsnorm(yArg: Float32Array, xArg: Float32Array, nArg: number, dimArg: number, weightArg: Float32Array, epsArg: number): void {
    const y = f32(yArg, 'rmsnorm: y');
    const x = f32(xArg, 'rmsnorm: x');
    const n = int(nArg, 'rmsnorm: n', 0);
    const dim = int(dimArg, 'rmsnorm: dim', 1);
    const weight = f32(weightArg, 'rmsnorm: weight');
    const eps = finite(epsArg, 'rmsnorm: eps');
    if (eps < 0) throw new RangeError('rmsnorm: eps must be ≥ 0');
    atLeast(x, n * dim, 'rmsnorm: x');
    atLeast(y, n * dim, 'rmsnorm: y');
    atLeast(weight, dim, 'rmsnorm: weight');
    noOverlap(y, n * dim, 'rmsnorm: y', x, n * dim, 'x', true);
    noOverlap(y, n * dim, 'rmsnorm: y', weight, dim, 'weight');
    for (let i = 0; i < n; i++) {
      const o = i * dim;
      let ss = 0;
      for (let j = 0; j < dim; j++) ss += (x[o + j] as number) ** 2;
      const inv = 1 / Math.sqrt(ss / dim + eps);
      for (let j = 0; j < dim; j++) y[o + j] = (x[o + j] as number) * inv * (weight[j] as number);
    }
  }

  rope(xArg: Float32Array, nArg: number, headsArg: number, headDimArg: number, positionsArg: Int32Array, thetaArg: number): void {
    const x = f32(xArg, 'rope: x');
    const n = int(nArg, 'rope: n', 0);
    const heads = int(headsArg, 'rope: heads', 1);
    const headDim = int(headDimArg, 'rope: headDim', 2);
    if (headDim % 2) throw new RangeError('rope: headDim must be even');
    const positions = i32(positionsArg, 'rope: positions');
    const theta = finite(thetaArg, 'rope: theta');
    if (theta <= 0) throw new RangeError('rope: theta must be > 0');
    atLeast(x, n * heads * headDim, 'rope: x');
    atLeast(positions, n, 'rope: positions');
    const half = headDim / 2;
    for (let r = 0; r < n; r++) {
      const pos = positions[r] as number;
      for (let i = 0; i < half; i++) {
        const angle = pos * theta ** ((-2 * i) / headDim);
        const c = Math.cos(angle);
        const s = Math.sin(angle);
        for (let h = 0; h < heads; h++) {
          const a = (r * heads + h) * headDim + i;
          const x0 = x[a] as number;
          const x1 = x[a + half] as number;
          x[a] = x0 * c - x1 * s;
          x[a + half] = x1 * c + x0 * s;
        }
      }
    }
  }

  attention(argsArg: AttentionArgs): void {
    const a = object(argsArg, 'attention(args): args');
    const out = f32(a.out, 'attention: out');
    const q = f32(a.q, 'attention: q');
    const kCache = f32(a.kCache, 'attention: kCache');
    const vCache = f32(a.vCache, 'attention: vCache');
    const nTokens = int(a.nTokens, 'attention: nTokens', 0);
    const start = int(a.start, 'attention: start', 0);
    const heads = int(a.heads, 'attention: heads', 1);
    const kvHeads = int(a.kvHeads, 'attention: kvHeads', 1);
    const hd = int(a.headDim, 'attention: headDim', 1);
    if (heads % kvHeads) throw new RangeError('attention: heads must be a multiple of kvHeads');
    const qs = nTokens * heads * hd;
    const kvDim = kvHeads * hd;
    const cs = (start + nTokens) * kvDim;
    atLeast(q, qs, 'attention: q');
    atLeast(out, qs, 'attention: out');
    atLeast(kCache, cs, 'attention: kCache');
    atLeast(vCache, cs, 'attention: vCache');
    noOverlap(out, qs, 'attention: out', q, qs, 'q');
    noOverlap(out, qs, 'attention: out', kCache, cs, 'kCache');
    noOverlap(out, qs, 'attention: out', vCache, cs, 'vCache');
    const group = heads / kvHeads;
    const scale = 1 / Math.sqrt(hd);
    for (let t = 0; t < nTokens; t++) {
      const len = start + t + 1;
      const p = new Float64Array(len);
      for (let h = 0; h < heads; h++) {
        const qo = (t * heads + h) * hd;
        const ko = Math.floor(h / group) * hd;
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < len; j++) {
          let s = 0;
          for (let d = 0; d < hd; d++) s += (q[qo + d] as number) * (kCache[j * kvDim + ko + d] as number);
          p[j] = s * scale;
          max = Math.max(max, s * scale);
        }
        let sum = 0;
        for (let j = 0; j < len; j++) {
          p[j] = Math.exp((p[j] as number) - max);
          sum += p[j] as number;
        }
        for (let d = 0; d < hd; d++) {
          let s = 0;
          for (let j = 0; j < len; j++) s += (p[j] as number) * (vCache[j * kvDim + ko + d] as number);
          out[qo + d] = s / sum;
        }
      }
    }
  }

  siluMul(gateArg: Float32Array, upArg: Float32Array, lenArg: number): void {
    const gate = f32(gateArg, 'siluMul: gate');
    const up = f32(upArg, 'siluMul: up');
    const len = int(lenArg, 'siluMul: len', 0, 2 ** 46);
    atLeast(gate, len, 'siluMul: gate');
    atLeast(up, len, 'siluMul: up');
    noOverlap(gate, len, 'siluMul: gate', up, len, 'up', true);
    for (let i = 0; i < len; i++) {
      const g = gate[i] as number;
      gate[i] = (g / (1 + Math.exp(-g))) * (up[i] as number);
    }
  }
}
