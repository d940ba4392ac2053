/**
 * Sparse (LoRI-style) and VeRA LoRA handles on both backends, against a float64 computation
 * written here from the raw factors, mixed with dense handles in one `lora` call.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JsBackend } from './js.ts';
import { createNativeBackend } from './native.ts';
import { bf16Value, expectClose, Rng, toBf16 } from './testing.ts';
import type { Backend, LoraHandle, LoraInit, VeraProjectionHandle, VeraProjectionInit, VeraTerm } from './types.ts';

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

const stored = (a: Float32Array, bf16: boolean) => Float64Array.from(a, (v) => (bf16 ? bf16Value(toBf16(v)) : v));

/** One slot of a test call: how to make its handle on a backend, and its float64 math. */
interface Slot {
  make(be: Backend, projections: VeraProjectionHandle[]): LoraHandle;
  /** Adds this slot's update to row i: y[j] = keep[j] + Σ, with the magnitude of the terms. */
  apply(x: Float32Array, xo: number, y0: Float32Array, yo: number): { y: number[]; mag: number[] };
}

/** A LoRA slot whose B has `zeros` of its entries exactly zero (±0), stored in `layout`. */
function loraSlot(
  rng: Rng,
  rank: number,
  out: number,
  inF: number,
  opts: { zeros?: number; rowScale?: boolean; bf16?: boolean; layout?: LoraInit['layout'] },
): Slot & { init: LoraInit } {
  const A = rng.f32(rank * inF);
  const B = rng.f32(out * rank).map((v) => (rng.next() < (opts.zeros ?? 0) ? (rng.next() < 0.5 ? 0 : -0) : v));
  const init: LoraInit = { rank, out, in: inF, A, B, dtype: opts.bf16 ? 'bf16' : 'f32', layout: opts.layout ?? 'auto' };
  if (opts.rowScale) init.rowScale = rng.f32(out).map((v) => 1 + 0.5 * v);
  const As = stored(A, !!opts.bf16);
  const Bs = stored(B, !!opts.bf16);
  return {
    init,
    make: (be) => be.createLora(init),
    apply(x, xo, y0, yo) {
      const t: number[] = [];
      const tm: number[] = [];
      for (let r = 0; r < rank; r++) {
        let s = 0;
        let m = 0;
        for (let k = 0; k < inF; k++) {
          const p = (As[r * inF + k] as number) * (x[xo + k] as number);
          s += p;
          m += Math.abs(p);
        }
        t.push(s);
        tm.push(m);
      }
      const y: number[] = [];
      const mag: number[] = [];
      for (let j = 0; j < out; j++) {
        const keep = (y0[yo + j] as number) * (init.rowScale ? (init.rowScale[j] as number) : 1);
        let s = keep;
        let m = Math.abs(keep);
        for (let r = 0; r < rank; r++) {
          s += (Bs[j * rank + r] as number) * (t[r] as number);
          m += Math.abs(Bs[j * rank + r] as number) * (tm[r] as number);
        }
        y.push(s);
        mag.push(m);
      }
      return { y, mag };
    },
  };
}

/** Shared VeRA projections and their stored values. */
function veraProjection(rng: Rng, rank: number, maxIn: number, maxOut: number, bf16 = false) {
  const init: VeraProjectionInit = {
    rank,
    maxIn,
    maxOut,
    A: rng.f32(rank * maxIn),
    B: rng.f32(maxOut * rank),
    dtype: bf16 ? 'bf16' : 'f32',
  };
  return { init, A: stored(init.A, bf16), B: stored(init.B, bf16) };
}

/** A VeRA module slot: y += Σ_k λ_b,k ⊙ (B_s[:out] (λ_d,k ⊙ (A_s[:, :in] x))). */
function veraSlot(rng: Rng, p: ReturnType<typeof veraProjection>, out: number, inF: number, nTerms: number, pi = 0): Slot {
  const { rank, maxIn } = p.init;
  const terms: VeraTerm[] = Array.from({ length: nTerms }, () => ({ lambdaB: rng.f32(out), lambdaD: rng.f32(rank) }));
  return {
    make: (be, projections) => be.createVera!({ projection: projections[pi]!, out, in: inF, terms }),
    apply(x, xo, y0, yo) {
      const t: number[] = [];
      const tm: number[] = [];
      for (let r = 0; r < rank; r++) {
        let s = 0;
        let m = 0;
        for (let k = 0; k < inF; k++) {
          const v = (p.A[r * maxIn + k] as number) * (x[xo + k] as number);
          s += v;
          m += Math.abs(v);
        }
        t.push(s);
        tm.push(m);
      }
      const y: number[] = [];
      const mag: number[] = [];
      for (let j = 0; j < out; j++) {
        let s = y0[yo + j] as number;
        let m = Math.abs(s);
        for (const term of terms) {
          let u = 0;
          let um = 0;
          for (let r = 0; r < rank; r++) {
            const c = (p.B[j * rank + r] as number) * (term.lambdaD[r] as number);
            u += c * (t[r] as number);
            um += Math.abs(c) * (tm[r] as number);
          }
          s += (term.lambdaB[j] as number) * u;
          m += Math.abs(term.lambdaB[j] as number) * um;
        }
        y.push(s);
        mag.push(m);
      }
      return { y, mag };
    },
  };
}

/** Runs one lora call on both backends and checks each against float64 and each other. */
function run(
  slotsList: number[],
  slotDefs: Slot[],
  out: number,
  inF: number,
  seed: number,
  projs: VeraProjectionInit[] = [],
): LoraHandle[] {
  const rng = new Rng(seed);
  const n = slotsList.length;
  const slots = Int32Array.from(slotsList);
  const x = rng.f32(n * inF);
  const y0 = rng.f32(n * out);
  const ref = new Float64Array(n * out);
  const mag = new Float64Array(n * out);
  for (let i = 0; i < n; i++) {
    const s = slots[i] as number;
    const r =
      s < 0
        ? { y: [...y0.subarray(i * out, (i + 1) * out)], mag: [...y0.subarray(i * out, (i + 1) * out)].map(Math.abs) }
        : slotDefs[s]!.apply(x, i * inF, y0, i * out);
    ref.set(r.y, i * out);
    mag.set(r.mag, i * out);
  }
  const pn = projs.map((p) => native.createVeraProjection(p));
  const pj = projs.map((p) => js.createVeraProjection(p));
  const hn = slotDefs.map((d) => d.make(native, pn));
  const hj = slotDefs.map((d) => d.make(js, pj));
  const yn = y0.slice();
  const yj = y0.slice();
  native.lora(yn, x, n, slots, hn);
  js.lora(yj, x, n, slots, hj);
  const label = `lora n=${n} slots=[${slotsList.join(',')}] ${out}×${inF}`;
  expectClose(yn, ref, mag, 1e-5, `${label} native vs float64`);
  expectClose(yj, ref, mag, 1e-7, `${label} js vs float64`);
  expectClose(yn, yj, mag, 1e-5, `${label} native vs js`);
  for (let i = 0; i < n; i++) {
    if ((slots[i] as number) >= 0) continue;
    for (let j = 0; j < out; j++) expect(yn[i * out + j]).toBe(y0[i * out + j]);
  }
  for (const h of hn) native.release(h);
  for (const p of pn) native.release(p);
  return hn;
}

const BATCHES: [string, (k: number) => number[]][] = [
  ['one row', () => [0]],
  ['a decode batch, one row per slot and rows without adapter', (k) => [...Array.from({ length: k }, (_, i) => k - 1 - i), -1, 0]],
  ['prefill segments', (k) => Array.from({ length: k }, (_, i) => Array(5 + 3 * i).fill(i)).flat()],
  [
    'a long segment split over tasks, then scattered rows',
    (k) => [...Array(40).fill(0), ...Array.from({ length: 3 * k }, (_, i) => i % k), -1],
  ],
];

describe.each(ISAS)('sparse and VeRA handles with the %s kernels', (isa) => {
  beforeAll(() => native.setIsa(isa));
  afterAll(() => native.setIsa('auto'));

  // Ragged outputs (partial sparse blocks), several column tasks (530 > 256), ranks that take
  // each lookup table of the kernels (≤ 8, 16, 32, 64, gather).
  for (const [out, inF] of [
    [37, 33],
    [530, 48],
    [5, 129],
  ] as const) {
    describe(`sparse B, ${inF} → ${out}`, () => {
      const rng = new Rng(out * 7 + inF);
      const defs = [
        loraSlot(rng, 16, out, inF, { zeros: 0.9, layout: 'sparse' }),
        loraSlot(rng, 8, out, inF, { zeros: 0.9, layout: 'sparse', rowScale: true }),
        loraSlot(rng, 16, out, inF, { layout: 'dense' }),
        loraSlot(rng, 40, out, inF, { zeros: 0.85, layout: 'sparse', bf16: true }),
        loraSlot(rng, 70, out, inF, { zeros: 0.95, layout: 'sparse', rowScale: true }),
        loraSlot(rng, 24, out, inF, { zeros: 0.9, layout: 'sparse', bf16: true, rowScale: true }),
        loraSlot(rng, 200, out, inF, { zeros: 0.97, layout: 'sparse' }),
      ];
      it.each(BATCHES)('%s', (_, batch) => {
        const hs = run(batch(defs.length), defs, out, inF, 11);
        expect(hs.map((h) => h.layout)).toEqual(['sparse', 'sparse', 'dense', 'sparse', 'sparse', 'sparse', 'sparse']);
      });
      // Both sum each output in increasing rank order; only the dense kernel's scalar column tail
      // rounds its multiply-adds separately, so the two agree to an ulp or so.
      it('gives the dense layout’s numbers within f32 rounding', () => {
        const n = 9;
        const slots = Int32Array.from({ length: n }, (_, i) => i % defs.length);
        const x = rng.f32(n * inF);
        const y0 = rng.f32(n * out);
        const ys = y0.slice();
        const yd = y0.slice();
        const sparse = defs.map((d) => native.createLora(d.init));
        const dense = defs.map((d) => native.createLora({ ...d.init, layout: 'dense' }));
        native.lora(ys, x, n, slots, sparse);
        native.lora(yd, x, n, slots, dense);
        expectClose(
          ys,
          yd,
          Float64Array.from(yd, (v) => Math.abs(v) + 1e-3),
          1e-5,
          'sparse vs dense',
        );
      });
    });
  }

  for (const [out, inF, maxOut, maxIn] of [
    [37, 33, 40, 48],
    [530, 48, 530, 64],
    [5, 129, 300, 129],
  ] as const) {
    describe(`VeRA, ${inF} → ${out} over projections ${maxOut}×${maxIn}`, () => {
      it.each([16, 256, 7])('rank %i: one- and two-term modules beside dense and sparse handles', (rank) => {
        const rng = new Rng(rank * 13 + out);
        const p = veraProjection(rng, rank, maxIn, maxOut);
        const defs: Slot[] = [
          veraSlot(rng, p, out, inF, 1),
          loraSlot(rng, 8, out, inF, { zeros: 0.9, layout: 'sparse', rowScale: true }),
          veraSlot(rng, p, out, inF, 2),
          loraSlot(rng, 16, out, inF, { rowScale: true }),
        ];
        for (const [i, [, batch]] of BATCHES.entries()) {
          const hs = run(batch(defs.length), defs, out, inF, 20 + i, [p.init]);
          expect(hs.map((h) => h.layout)).toEqual(['vera', 'sparse', 'vera', 'dense']);
        }
      });
    });
  }

  it('VeRA with bf16 projections', () => {
    const rng = new Rng(5);
    const p = veraProjection(rng, 32, 96, 160, true);
    const defs = [veraSlot(rng, p, 150, 90, 1), veraSlot(rng, p, 150, 90, 3)];
    run([0, 1, 1, 0, -1, 1], defs, 150, 90, 6, [p.init]);
    run(Array(33).fill(1), defs, 150, 90, 7, [p.init]);
  });

  it('two projections (ranks 256 and 12) in one call, each with modules of several adapters', () => {
    const rng = new Rng(8);
    const p = veraProjection(rng, 256, 64, 96);
    const q = veraProjection(rng, 12, 70, 80);
    const defs: Slot[] = [
      veraSlot(rng, p, 77, 60, 1, 0),
      veraSlot(rng, q, 77, 60, 2, 1),
      loraSlot(rng, 8, 77, 60, { zeros: 0.9, layout: 'sparse' }),
      veraSlot(rng, p, 77, 60, 3, 0),
      veraSlot(rng, q, 77, 60, 1, 1),
    ];
    for (const [i, [, batch]] of BATCHES.entries()) run(batch(defs.length), defs, 77, 60, 40 + i, [p.init, q.init]);
  });
});

describe('layouts at other thread counts', () => {
  const original = native.threads;
  afterAll(() => native.setThreads(original));
  it.each([1, 3])('%i threads', (t) => {
    native.setThreads(t);
    const rng = new Rng(99);
    const p = veraProjection(rng, 256, 80, 96);
    const defs: Slot[] = [veraSlot(rng, p, 96, 80, 2), loraSlot(rng, 16, 96, 80, { zeros: 0.9, layout: 'sparse' })];
    run([0, 1, 0, 0, 1, 1, -1, 0, 1], defs, 96, 80, 8, [p.init]);
    run([0], defs, 96, 80, 9, [p.init]);
  });
});

describe('layout choice and bytes', () => {
  it("'auto' keeps a B with fewer than 80% zeros dense, on both backends", () => {
    const rng = new Rng(3);
    const { init } = loraSlot(rng, 16, 768, 288, { zeros: 0.7 });
    for (const be of [native, js]) expect(be.createLora(init).layout).toBe('dense');
  });

  it("'auto' stores a LoRI-style B (90% zeros, rank 16) sparsely, and counts the sparse bytes", () => {
    const rng = new Rng(4);
    const { init } = loraSlot(rng, 16, 768, 288, { zeros: 0.9 });
    for (const be of [native, js]) {
      const sparse = be.createLora(init);
      const dense = be.createLora({ ...init, layout: 'dense' });
      expect(sparse.layout, be.name).toBe('sparse');
      expect(dense.bytes, be.name).toBe((16 * 768 + 16 * 288) * 4);
      // A stays dense; B shrinks to well under half.
      expect(sparse.bytes! - 16 * 288 * 4, be.name).toBeLessThan((16 * 768 * 4) / 2);
    }
  });

  it('refuses a sparse layout beyond rank 256 and unknown layouts, on both backends', () => {
    const rng = new Rng(5);
    const { init } = loraSlot(rng, 300, 4, 4, { zeros: 0.9 });
    for (const be of [native, js]) {
      expect(() => be.createLora({ ...init, layout: 'sparse' }), be.name).toThrow(RangeError);
      expect(() => be.createLora({ ...init, layout: 'sparse' }), be.name).toThrow(/rank ≤ 256/);
      expect(be.createLora(init).layout, be.name).toBe('dense');
      expect(() => be.createLora({ ...init, layout: 'csr' as 'dense' }), be.name).toThrow(/init.layout must be/);
    }
  });
});

describe('VeRA handles: checks and lifetime', () => {
  const rng = new Rng(6);
  const p = veraProjection(rng, 8, 16, 24);
  const term = { lambdaB: rng.f32(20), lambdaD: rng.f32(8) };

  it.each([
    ['a foreign projection', { projection: {}, out: 20, in: 16, terms: [term] }, TypeError, /init.projection/],
    ['out beyond maxOut', { out: 25, in: 16, terms: [term] }, RangeError, /init.out/],
    ['in beyond maxIn', { out: 20, in: 17, terms: [term] }, RangeError, /init.in/],
    ['no terms', { out: 20, in: 16, terms: [] }, RangeError, /at least one/],
    ['a short lambdaD', { out: 20, in: 16, terms: [{ ...term, lambdaD: rng.f32(7) }] }, RangeError, /lambdaD/],
    ['a lambdaB of the wrong length', { out: 19, in: 16, terms: [term] }, RangeError, /lambdaB/],
  ] as const)('refuses %s on both backends', (_, init, kind, msg) => {
    for (const be of [native, js]) {
      const projection = be.createVeraProjection!(p.init);
      expect(() => be.createVera!({ projection, ...init } as never), be.name).toThrow(kind);
      expect(() => be.createVera!({ projection, ...init } as never), be.name).toThrow(msg);
    }
  });

  it('modules keep a released projection alive; a released projection makes no new modules', () => {
    for (const be of [native, js]) {
      const projection = be.createVeraProjection!(p.init);
      expect(projection.bytes).toBe(8 * (16 + 24) * 4);
      const h = be.createVera!({ projection, out: 20, in: 16, terms: [term] });
      expect(h.projection).toBe(projection);
      const x = rng.f32(16);
      const before = new Float32Array(20);
      be.lora(before, x, 1, Int32Array.of(0), [h]);
      be.release!(projection);
      expect(() => be.createVera!({ projection, out: 20, in: 16, terms: [term] }), be.name).toThrow(/released/);
      const after = new Float32Array(20);
      be.lora(after, x, 1, Int32Array.of(0), [h]);
      expect([...after], be.name).toEqual([...before]);
      be.release!(h);
      expect(() => be.lora(after, x, 1, Int32Array.of(0), [h]), be.name).toThrow(/released/);
    }
  });
});
