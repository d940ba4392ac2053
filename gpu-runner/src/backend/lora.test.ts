import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JsBackend } from './js.ts';
import { createNativeBackend } from './native.ts';
import { bf16Value, expectClose, Rng, toBf16 } from './testing.ts';
import type { LoraHandle, LoraInit } from './types.ts';

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

interface Adapter {
  init: LoraInit;
  /** The factors as stored (bf16-rounded when asked). */
  A: Float64Array;
  B: Float64Array;
}

function adapter(rng: Rng, rank: number, out: number, inF: number, opts: { rowScale?: boolean; bf16?: boolean }): Adapter {
  const A = rng.f32(rank * inF);
  const B = rng.f32(out * rank);
  const init: LoraInit = { rank, out, in: inF, A, B, dtype: opts.bf16 ? 'bf16' : 'f32' };
  if (opts.rowScale) init.rowScale = rng.f32(out).map((v) => 1 + 0.5 * v);
  const stored = (a: Float32Array) => Float64Array.from(a, (v) => (opts.bf16 ? bf16Value(toBf16(v)) : v));
  return { init, A: stored(A), B: stored(B) };
}

/** y_i = rowScale ⊙ y0_i + B (A x_i) in float64, with the magnitude the f32 result is accurate to. */
function reference(y0: Float32Array, x: Float32Array, n: number, slots: Int32Array, ads: Adapter[], out: number, inF: number) {
  const y = Float64Array.from(y0.subarray(0, n * out));
  const mag = Float64Array.from(y, Math.abs);
  for (let i = 0; i < n; i++) {
    const s = slots[i] as number;
    if (s < 0) continue;
    const { init, A, B } = ads[s] as Adapter;
    const r = init.rank;
    const t = new Float64Array(r);
    const tm = new Float64Array(r);
    for (let k = 0; k < r; k++) {
      for (let c = 0; c < inF; c++) {
        const p = (A[k * inF + c] as number) * (x[i * inF + c] as number);
        t[k] = (t[k] as number) + p;
        tm[k] = (tm[k] as number) + Math.abs(p);
      }
    }
    for (let j = 0; j < out; j++) {
      const keep = (y0[i * out + j] as number) * (init.rowScale ? (init.rowScale[j] as number) : 1);
      let acc = keep;
      let m = Math.abs(keep);
      for (let k = 0; k < r; k++) {
        acc += (B[j * r + k] as number) * (t[k] as number);
        m += Math.abs(B[j * r + k] as number) * (tm[k] as number);
      }
      y[i * out + j] = acc;
      mag[i * out + j] = m;
    }
  }
  return { y, mag };
}

function run(slotsList: number[], ads: Adapter[], out: number, inF: number, seed: number): void {
  const rng = new Rng(seed);
  const n = slotsList.length;
  const slots = Int32Array.from(slotsList);
  const x = rng.f32(n * inF);
  const y0 = rng.f32(n * out);
  const { y: ref, mag } = reference(y0, x, n, slots, ads, out, inF);
  const hn: LoraHandle[] = ads.map((a) => native.createLora(a.init));
  const hj: LoraHandle[] = ads.map((a) => js.createLora(a.init));
  const yn = y0.slice();
  const yj = y0.slice();
  native.lora(yn, x, n, slots, hn);
  js.lora(yj, x, n, slots, hj);
  const label = `lora n=${n} slots=[${slotsList.join(',')}]`;
  expectClose(yn, ref, mag, 1e-5, `${label} native vs float64`);
  expectClose(yj, ref, mag, 1e-7, `${label} js vs float64`);
  expectClose(yn, yj, mag, 1e-5, `${label} native vs js`);
  // Rows without an adapter are not touched at all.
  for (let i = 0; i < n; i++) {
    if ((slots[i] as number) >= 0) continue;
    for (let j = 0; j < out; j++) expect(yn[i * out + j]).toBe(y0[i * out + j]);
  }
  for (const h of hn) native.release(h);
}

describe.each(ISAS)('lora with the %s kernels', (isa) => {
  beforeAll(() => native.setIsa(isa));
  afterAll(() => native.setIsa('auto'));

  for (const [out, inF] of [
    [37, 33],
    [64, 48],
    [5, 129],
  ] as const) {
    describe(`${inF} → ${out}`, () => {
      const rng = new Rng(out * 31 + inF);
      // Ranks 1, 8, 16, 24 in one call; rowScale and bf16 factors on some.
      const ads = [
        adapter(rng, 1, out, inF, {}),
        adapter(rng, 8, out, inF, { rowScale: true }),
        adapter(rng, 16, out, inF, { bf16: true }),
        adapter(rng, 24, out, inF, { rowScale: true, bf16: true }),
      ];
      it('one row', () => run([2], ads, out, inF, 1));
      it('a decode batch: one row per slot, some without adapter', () => run([3, -1, 0, 1, 2, -1, 1, 0, 3], ads, out, inF, 2));
      it('prefill segments of adjacent equal slots', () => run([0, 0, 0, 1, 1, 1, 1, 1, -1, -1, 3, 3, 3, 3, 2, 2, 2], ads, out, inF, 3));
      it('scattered rows of the same slot', () => run([1, 0, 1, 3, 1, 0, -1, 1, 2, 1, 3, 0], ads, out, inF, 4));
      it('a long segment split over tasks (64 rows, one slot), then another', () => {
        run([...Array(64).fill(3), ...Array(17).fill(1), 0, -1, 2], ads, out, inF, 5);
      });
      it('all rows without adapter', () => run([-1, -1, -1], ads, out, inF, 6));
    });
  }
});

describe('lora thread counts', () => {
  const original = native.threads;
  afterAll(() => native.setThreads(original));
  it.each([1, 3])('%i threads', (t) => {
    native.setThreads(t);
    const rng = new Rng(77);
    const ads = [adapter(rng, 16, 96, 80, { rowScale: true }), adapter(rng, 8, 96, 80, { bf16: true })];
    run([0, 1, 0, 0, 1, 1, -1, 0, 1], ads, 96, 80, 8);
  });
});

describe('lora with no handles', () => {
  it('is a no-op when every slot is negative', () => {
    const y = Float32Array.of(1, 2);
    native.lora(y, Float32Array.of(3), 2, Int32Array.of(-1, -1), []);
    js.lora(y, Float32Array.of(3), 2, Int32Array.of(-1, -1), []);
    expect([...y]).toEqual([1, 2]);
  });
});
