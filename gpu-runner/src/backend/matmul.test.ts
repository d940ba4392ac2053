import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JsBackend } from './js.ts';
import { createNativeBackend } from './native.ts';
import { expectClose, offsetArray, Rng, randomWeight, refMatmul } from './testing.ts';
import type { Backend, WeightDType } from './types.ts';

const native = createNativeBackend();
const js = new JsBackend();
/** Every kernel set this CPU can run: all of them are exercised, not only the one auto picks. */
const ISAS = (['avx512', 'avx2', 'portable'] as const).filter((isa) => {
  try {
    native.setIsa(isa);
    return true;
  } catch {
    return false;
  }
});
native.setIsa('auto');
const TOL = 1e-5;

function check(be: Backend, dtype: WeightDType, out: number, inF: number, ns: number[], seed: number, blocksize = 64): void {
  const rng = new Rng(seed);
  const { init, values } = randomWeight(rng, dtype, out, inF, blocksize);
  const w = be.createWeight(init);
  const wj = js.createWeight(init);
  for (const n of ns) {
    const x = rng.f32(n * inF);
    const { y: ref, mag } = refMatmul(x, n, values, out, inF);
    const y = offsetArray(n * out);
    be.matmul(y.view, x, n, w);
    y.guard();
    const yj = new Float32Array(n * out);
    js.matmul(yj, x, n, wj);
    const label = `${be.name} ${dtype} [${out}×${inF}] n=${n}`;
    expectClose(y.view, ref, mag, TOL, `${label} vs float64`);
    expectClose(yj, ref, mag, 1e-7, `js ${dtype} [${out}×${inF}] n=${n} vs float64`);
    expectClose(y.view, yj, mag, TOL, `${label} vs js`);
  }
  be.release?.(w);
}

const SHAPES: [number, number][] = [
  [37, 33],
  [5, 1],
  [64, 64],
  [129, 100],
  [16, 768],
];
const NS = [1, 3, 4, 5, 17, 64];

describe('the native backend loads', () => {
  it('reports its kernel sets', () => {
    expect(native.name).toBe('cpu-native');
    expect(ISAS).toContain('portable');
    expect(ISAS).toContain(native.isa);
  });
});

describe.each(ISAS)('matmul with the %s kernels', (isa) => {
  beforeAll(() => native.setIsa(isa));
  afterAll(() => native.setIsa('auto'));

  for (const dtype of ['f32', 'bf16', 'f16'] as const) {
    for (const [out, inF] of SHAPES) {
      it(`${dtype} ${out}×${inF}`, () => check(native, dtype, out, inF, NS, out * 1000 + inF));
    }
  }

  it.each([
    [37, 33, 64], // odd element count: blocks straddle rows, rows start mid-byte
    [64, 64, 64], // aligned: the decode-on-the-fly GEMV path
    [7, 128, 64],
    [9, 96, 64], // `in` not a multiple of the blocksize
    [12, 48, 16],
    [10, 24, 8],
    [3, 5, 64], // fewer elements than one block
    [6, 512, 256], // blocks longer than a GEMV chunk
    [11, 160, 32], // a partial last chunk
    [5, 96, 48], // a blocksize that is not a power of two: the dequantizing GEMM path even for n = 1
  ])('nf4 %i×%i, blocksize %i', (out, inF, bs) => check(native, 'nf4', out, inF, NS, out * 7 + inF, bs));

  it('cuts long rows into K slices (in = 2500)', () => {
    for (const dtype of ['f32', 'bf16', 'nf4'] as const) check(native, dtype, 40, 2500, [1, 5], 99, 100);
  });
});

describe('matmul thread counts', () => {
  const original = native.threads;
  afterAll(() => native.setThreads(original));
  it.each([1, 2, 3])('%i threads give the same numbers', (t) => {
    native.setThreads(t);
    expect(native.threads).toBe(t);
    for (const dtype of ['f32', 'nf4'] as const) check(native, dtype, 203, 64, [1, 17], 5);
  });
});

describe('matmul edge cases', () => {
  it('n = 0 writes nothing', () => {
    const w = native.createWeight({ dtype: 'f32', out: 2, in: 2, data: new Float32Array(4) });
    const y = Float32Array.of(7, 7);
    native.matmul(y, new Float32Array(0), 0, w);
    expect([...y]).toEqual([7, 7]);
  });

  it('propagates inf and NaN like IEEE arithmetic', () => {
    const w = native.createWeight({ dtype: 'f32', out: 2, in: 3, data: Float32Array.of(1, 0, 0, 0, 1, 1) });
    const y = new Float32Array(2);
    // Row 0 sees inf·1 + 0·0 + 0·1 = inf; row 1 sees 0·inf = NaN.
    native.matmul(y, Float32Array.of(Number.POSITIVE_INFINITY, 0, 1), 1, w);
    expect(y[0]).toBe(Number.POSITIVE_INFINITY);
    expect(Number.isNaN(y[1])).toBe(true);
  });
});
