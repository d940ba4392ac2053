/**
 * The cuda backend. Everywhere: the module builds where nvcc runs, reports the machine without
 * throwing, checks every argument before it touches a device, and fails cleanly ('no CUDA
 * device…') without one. Where a device is present (the lent GPU machine, through
 * scripts/gpu-check.sh): every op against float64 references and the js backend on the CPU
 * suites' cases (awkward sizes, both matmul paths, every dtype, NF4 layouts, mixed ranks, bf16
 * factors), all 65536 bf16 / f16 patterns, argument refusals, memory release, worker threads, and
 * the engine's golden generations (stories260k vs llama2.c, adapters vs PEFT, NF4) on the GPU.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker } from 'node:worker_threads';
import {
  dequantizeNf4Tensor,
  greedy,
  isQuantizedLinear,
  loadLlamaWeights,
  quantizeNf4,
  type Tensor,
  toBnbTensors,
} from '@lora-edge/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADAPTERS, ALL_ADAPTERS, readJson, STORIES } from '../../../test/fixtures.ts';
import { Engine } from '../engine/engine.ts';
import type { MixEntry } from '../engine/mix.ts';
import { loadRunnerModel } from '../engine/model.ts';
import { nf4Decoder } from '../engine/nf4.ts';
import { loadAdapterDir, modelSource, openModelDir } from '../io/files.ts';
import { CudaBackend, createCudaBackend, loadCudaAddon } from './cuda.ts';
import { loadBackend } from './index.ts';
import { JsBackend } from './js.ts';
import { loadNativeAddon } from './native.ts';
import { bf16Value, expectClose, f16Value, NF4_TABLE, offsetArray, Rng, randomWeight, refMatmul, toBf16 } from './testing.ts';
import type { Backend, LoraHandle, LoraInit, WeightDType, WeightInit } from './types.ts';

const { addon, error: loadError } = loadCudaAddon();
const nvcc = spawnSync('nvcc', ['--version'], { stdio: 'ignore' }).status === 0;
const info = addon?.info();
const hasDevice = !!info?.device && info.count > 0;
/** The backend over the module even without a device: argument checks run before any device work. */
const cuda = addon ? new CudaBackend(addon) : undefined;
const js = new JsBackend();
const NO_DEVICE = /^no CUDA device/;

// biome-ignore lint/suspicious/noExplicitAny: the point is to pass what the types forbid
const bad = (v: unknown): any => v;

/** Runs fn: with a device it must succeed, without one it must fail with 'no CUDA device'. */
function reachesDevice(fn: () => unknown): void {
  if (hasDevice) fn();
  else expect(fn).toThrow(NO_DEVICE);
}

describe('the CUDA module', () => {
  it.runIf(nvcc)('is built where nvcc runs (build/Release/lora_edge_cuda.node)', () => {
    expect(loadError?.message).toBeUndefined();
    expect(Object.keys(addon ?? {}).sort()).toEqual(
      ['attention', 'createLora', 'createWeight', 'info', 'lora', 'matmul', 'release', 'rmsnorm', 'rope', 'siluMul', 'stats'].sort(),
    );
  });

  it.runIf(!addon)('is missing: creating the backend says so', () => {
    expect(loadError?.message).toMatch(NO_DEVICE);
    expect(() => createCudaBackend()).toThrow(NO_DEVICE);
  });

  it.runIf(!!addon)('reports the machine without throwing', () => {
    expect(info?.runtimeVersion).toBeGreaterThanOrEqual(12000);
    if (hasDevice) {
      expect(info?.device?.name).toBeTruthy();
      expect(info?.device?.major).toBeGreaterThanOrEqual(8);
      expect(info?.error).toBeUndefined();
    } else {
      expect(info?.error).toMatch(NO_DEVICE);
    }
    expect(addon?.stats()).toEqual({ handleBytes: expect.any(Number), scratchBytes: expect.any(Number) });
  });

  it.runIf(!hasDevice)('without a device, creating the backend fails cleanly with "no CUDA device"', () => {
    expect(() => createCudaBackend()).toThrow(NO_DEVICE);
    expect(() => loadBackend('cuda')).toThrow(NO_DEVICE);
  });

  it.runIf(hasDevice)('with a device, loadBackend("cuda") gives the cuda backend', () => {
    const be = loadBackend('cuda');
    expect(be.name).toBe('cuda');
    expect(be).toBeInstanceOf(CudaBackend);
  });

  it('loadBackend("auto") prefers cpu-native unless LORA_EDGE_BACKEND=cuda', () => {
    const saved = process.env.LORA_EDGE_BACKEND;
    try {
      delete process.env.LORA_EDGE_BACKEND;
      expect(loadBackend('auto').name).toBe(loadNativeAddon().addon ? 'cpu-native' : 'js');
      process.env.LORA_EDGE_BACKEND = 'cuda';
      if (hasDevice) expect(loadBackend('auto').name).toBe('cuda');
      else expect(() => loadBackend('auto')).toThrow(NO_DEVICE);
    } finally {
      if (saved === undefined) delete process.env.LORA_EDGE_BACKEND;
      else process.env.LORA_EDGE_BACKEND = saved;
    }
  });
});

describe.runIf(!!addon)('the CUDA module checks arguments before the device', () => {
  const be = cuda as CudaBackend;
  const f32w = (): WeightInit => ({ dtype: 'f32', out: 3, in: 4, data: new Float32Array(12) });
  const loraInit = (): LoraInit => ({ rank: 2, out: 3, in: 4, A: new Float32Array(8), B: new Float32Array(6) });

  it('createWeight', () => {
    expect(() => be.createWeight(bad(undefined))).toThrow(TypeError);
    expect(() => be.createWeight({ ...f32w(), dtype: bad('f64') })).toThrow(RangeError);
    expect(() => be.createWeight({ ...f32w(), dtype: bad(1) })).toThrow(TypeError);
    expect(() => be.createWeight({ ...f32w(), data: new Float32Array(11) })).toThrow(RangeError);
    expect(() => be.createWeight({ ...f32w(), data: new Uint16Array(12) })).toThrow(TypeError);
    expect(() => be.createWeight({ ...f32w(), out: 0 })).toThrow(RangeError);
    expect(() => be.createWeight({ ...f32w(), out: 1.5 })).toThrow(RangeError);
    expect(() => be.createWeight({ ...f32w(), out: bad('3') })).toThrow(TypeError);
    expect(() => be.createWeight({ ...f32w(), out: 2 ** 40 })).toThrow(RangeError);
    expect(() => be.createWeight({ dtype: 'bf16', out: 3, in: 4, data: new Float32Array(12) })).toThrow(TypeError);
    const nf4 = (): WeightInit => ({
      dtype: 'nf4',
      out: 3,
      in: 5,
      data: new Uint8Array(8),
      nf4: { blocksize: 4, absmax: new Float32Array(4), quantMap: NF4_TABLE },
    });
    expect(() => be.createWeight({ ...nf4(), nf4: undefined })).toThrow(TypeError);
    expect(() => be.createWeight({ ...nf4(), data: new Uint8Array(7) })).toThrow(RangeError);
    expect(() => be.createWeight({ ...nf4(), nf4: { blocksize: 4, absmax: new Float32Array(3), quantMap: NF4_TABLE } })).toThrow(
      RangeError,
    );
    expect(() => be.createWeight({ ...nf4(), nf4: { blocksize: 4, absmax: new Float32Array(4), quantMap: new Float32Array(15) } })).toThrow(
      RangeError,
    );
    reachesDevice(() => be.release(be.createWeight(f32w())));
    reachesDevice(() => be.release(be.createWeight(nf4())));
  });

  it('createLora', () => {
    expect(() => be.createLora(bad(null))).toThrow(TypeError);
    expect(() => be.createLora({ ...loraInit(), rank: 0 })).toThrow(RangeError);
    expect(() => be.createLora({ ...loraInit(), A: new Float32Array(7) })).toThrow(RangeError);
    expect(() => be.createLora({ ...loraInit(), B: new Float32Array(8) })).toThrow(RangeError);
    expect(() => be.createLora({ ...loraInit(), rowScale: new Float32Array(4) })).toThrow(RangeError);
    expect(() => be.createLora({ ...loraInit(), rowScale: bad([1, 1, 1]) })).toThrow(TypeError);
    expect(() => be.createLora({ ...loraInit(), dtype: bad('f16') })).toThrow(RangeError);
    expect(() => be.createLora({ ...loraInit(), layout: bad('csr') })).toThrow(RangeError);
    expect(() => be.createLora({ ...loraInit(), layout: bad(3) })).toThrow(TypeError);
    reachesDevice(() => be.release(be.createLora({ ...loraInit(), dtype: 'bf16', layout: 'sparse' })));
  });

  it('ops that take no handle', () => {
    const x = new Float32Array(12);
    const w = new Float32Array(4);
    expect(() => be.rmsnorm(x, x, 3, 4, new Float32Array(3), 1e-5)).toThrow(RangeError);
    expect(() => be.rmsnorm(x, x, 3, 0, w, 1e-5)).toThrow(RangeError);
    expect(() => be.rmsnorm(x, x, 3, 4, w, Number.NaN)).toThrow(RangeError);
    expect(() => be.rmsnorm(x.subarray(1), x, 2, 4, w, 1e-5)).toThrow(RangeError);
    expect(() => be.rope(x, 3, 1, 3, new Int32Array(3), 10000)).toThrow(RangeError);
    expect(() => be.rope(x, 3, 1, 4, bad(new Float32Array(3)), 10000)).toThrow(TypeError);
    expect(() => be.rope(x, 4, 1, 4, new Int32Array(4), 10000)).toThrow(RangeError);
    expect(() => be.siluMul(x, new Float32Array(11), 12)).toThrow(RangeError);
    expect(() => be.siluMul(x, x.subarray(2), 8)).toThrow(RangeError);
    expect(() => be.siluMul(x, x, bad('12'))).toThrow(TypeError);
    const args = () => ({
      out: new Float32Array(8),
      q: new Float32Array(8),
      nTokens: 1,
      kCache: new Float32Array(12),
      vCache: new Float32Array(12),
      start: 2,
      heads: 2,
      kvHeads: 1,
      headDim: 4,
    });
    expect(() => be.attention(bad(undefined))).toThrow(TypeError);
    expect(() => be.attention({ ...args(), kvHeads: 3 })).toThrow(RangeError);
    expect(() => be.attention({ ...args(), start: 3 })).toThrow(RangeError);
    expect(() => be.attention({ ...args(), vCache: bad(undefined) })).toThrow(TypeError);
    const a = args();
    expect(() => be.attention({ ...a, out: a.q })).toThrow(RangeError);
    const hd = 2050; // beyond the kernels' headDim
    const big = () => new Float32Array(hd);
    expect(() =>
      be.attention({ out: big(), q: big(), nTokens: 1, kCache: big(), vCache: big(), start: 0, heads: 1, kvHeads: 1, headDim: hd }),
    ).toThrow(/headDim must be ≤ 2048/);
    // Nothing to do: no device needed.
    be.siluMul(x, x, 0);
    be.rmsnorm(x, x, 0, 4, w, 1e-5);
    be.attention({ ...args(), nTokens: 0 });
    reachesDevice(() => be.rmsnorm(x, x, 3, 4, w, 1e-5));
    reachesDevice(() => be.rope(x, 3, 1, 4, new Int32Array(3), 10000));
    reachesDevice(() => be.siluMul(x, x, 12));
    reachesDevice(() => be.attention(args()));
  });

  it('handles of other backends and foreign objects', () => {
    const y = new Float32Array(6);
    const x = new Float32Array(8);
    expect(() => be.matmul(y, x, 2, js.createWeight(f32w()))).toThrow(TypeError);
    expect(() => be.matmul(y, x, 2, bad({ dtype: 'f32', out: 3, in: 4 }))).toThrow(TypeError);
    expect(() => be.lora(y, x, 2, Int32Array.of(0, 0), [js.createLora(loraInit())])).toThrow(TypeError);
    expect(() => be.lora(y, x, 2, Int32Array.of(0, 0), bad({}))).toThrow(TypeError);
    expect(() => be.release(bad({ dtype: 'f32', out: 1, in: 1 }))).toThrow(TypeError);
    const nativeAddon = loadNativeAddon().addon;
    if (nativeAddon) {
      const foreign = nativeAddon.createWeight(f32w());
      expect(() => addon?.matmul(y, x, 2, foreign)).toThrow(/not a weight handle of the cuda backend/);
      expect(() => addon?.release(foreign)).toThrow(TypeError);
    }
    // Every slot negative and no handles: nothing to do.
    be.lora(y, x, 2, Int32Array.of(-1, -1), []);
  });

  it('every entry point throws a JavaScript error for every kind of wrong argument', () => {
    const garbage: unknown[] = [undefined, null, 0, -1, 1.5, Number.NaN, 2 ** 53, '', 'x', {}, [], [1, 2], () => 1, Symbol('s'), 10n];
    garbage.push(new Float32Array(3), new Int32Array(1), new Uint8Array(0), new ArrayBuffer(8), new DataView(new ArrayBuffer(4)));
    let calls = 0;
    for (const [name, fn] of Object.entries(addon as object) as [string, (...a: unknown[]) => unknown][]) {
      if (name === 'info' || name === 'stats') continue; // no arguments to get wrong
      for (const g of garbage) {
        for (const argc of [0, 1, 3, 6]) {
          calls++;
          expect(() => fn(...Array.from({ length: argc }, () => g)), `${name}(${argc} × ${typeof g})`).toThrow();
        }
      }
    }
    expect(calls).toBeGreaterThan(500);
  });
});

// ---------------------------------------------------------------------------------------------
// Everything below needs a device: written here, run on the lent GPU machine.

describe.runIf(hasDevice)('cuda matmul against float64 and the js backend', () => {
  const be = cuda as CudaBackend;
  const TOL = 1e-5;

  function check(dtype: WeightDType, out: number, inF: number, ns: number[], seed: number, blocksize = 64): void {
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
      const label = `cuda ${dtype} [${out}×${inF}] n=${n}`;
      expectClose(y.view, ref, mag, TOL, `${label} vs float64`);
      expectClose(y.view, yj, mag, TOL, `${label} vs js`);
    }
    be.release(w);
  }

  // n ≤ 8 runs the GEMV kernels, n > 8 the tiled GEMM (64-row tiles: 64, 65 and 130 cross them).
  const NS = [1, 3, 4, 5, 8, 9, 17, 64, 65, 130];
  const SHAPES: [number, number][] = [
    [37, 33],
    [5, 1],
    [64, 64],
    [129, 100],
    [16, 768],
    [300, 257],
  ];
  for (const dtype of ['f32', 'bf16', 'f16'] as const) {
    for (const [out, inF] of SHAPES) it(`${dtype} ${out}×${inF}`, () => check(dtype, out, inF, NS, out * 1000 + inF));
  }

  it.each([
    [37, 33, 64], // odd element count: blocks straddle rows, rows start mid-byte (repacked on upload)
    [64, 64, 64],
    [7, 128, 64],
    [9, 96, 64], // `in` not a multiple of the blocksize
    [12, 48, 16],
    [10, 24, 8],
    [3, 5, 64], // fewer elements than one block
    [6, 512, 256],
    [11, 160, 32],
    [5, 96, 48], // a blocksize that is not a power of two (division per element)
    [13, 77, 7], // odd blocksize, odd rows: several blocks inside one 8-element chunk
  ])('nf4 %i×%i, blocksize %i', (out, inF, bs) => check('nf4', out, inF, NS, out * 7 + inF, bs));

  it('long rows (in = 2500) and a wide layer (4096 outputs)', () => {
    for (const dtype of ['f32', 'bf16', 'nf4'] as const) check(dtype, 40, 2500, [1, 5, 20], 99, 100);
    for (const dtype of ['bf16', 'nf4'] as const) check(dtype, 4096, 256, [1, 16], 98);
  });

  it('n = 0 writes nothing; inf and NaN propagate like IEEE arithmetic', () => {
    const w0 = be.createWeight({ dtype: 'f32', out: 2, in: 2, data: new Float32Array(4) });
    const y0 = Float32Array.of(7, 7);
    be.matmul(y0, new Float32Array(0), 0, w0);
    expect([...y0]).toEqual([7, 7]);
    const w = be.createWeight({ dtype: 'f32', out: 2, in: 3, data: Float32Array.of(1, 0, 0, 0, 1, 1) });
    for (const n of [1, 9]) {
      const x = new Float32Array(3 * n);
      for (let i = 0; i < n; i++) x.set([Number.POSITIVE_INFINITY, 0, 1], 3 * i);
      const y = new Float32Array(2 * n);
      be.matmul(y, x, n, w);
      expect(y[0]).toBe(Number.POSITIVE_INFINITY);
      expect(Number.isNaN(y[1])).toBe(true);
    }
  });

  it.each(['bf16', 'f16'] as const)('%s: all 65536 patterns decode exactly (GEMV and GEMM)', (dtype) => {
    const decode = dtype === 'bf16' ? bf16Value : f16Value;
    const data = new Uint16Array(65536);
    const want = new Float64Array(65536);
    for (let h = 0; h < 65536; h++) {
      const v = decode(h);
      data[h] = Number.isFinite(v) ? h : 0;
      want[h] = Number.isFinite(v) ? v : 0;
    }
    const w = be.createWeight({ dtype, out: 4096, in: 16, data });
    const eye = new Float32Array(256);
    for (let i = 0; i < 16; i++) eye[i * 17] = 1;
    const y = new Float32Array(16 * 4096);
    be.matmul(y, eye, 16, w);
    const y1 = new Float32Array(4096);
    let wrong = 0;
    const same = (a: number, b: number) => a === b || (Number.isNaN(a) && Number.isNaN(b));
    for (let c = 0; c < 16; c++) {
      be.matmul(y1, eye.subarray(c * 16, c * 16 + 16), 1, w);
      for (let r = 0; r < 4096; r++) {
        const h = r * 16 + c;
        if (!same(y1[r] as number, want[h] as number) || !same(y[c * 4096 + r] as number, want[h] as number)) wrong++;
      }
    }
    expect(wrong, `${dtype}: inexact conversions`).toBe(0);
    // inf / NaN patterns pass through.
    const specials: number[] = [];
    for (let h = 0; h < 65536; h++) if (!Number.isFinite(decode(h))) specials.push(h);
    const sw = be.createWeight({ dtype, out: specials.length, in: 1, data: Uint16Array.from(specials) });
    const ys = new Float32Array(specials.length);
    be.matmul(ys, Float32Array.of(1), 1, sw);
    specials.forEach((h, r) => {
      expect(same(ys[r] as number, decode(h)), `${dtype} 0x${h.toString(16)}`).toBe(true);
    });
  });
});

interface Adapter {
  init: LoraInit;
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
function loraReference(y0: Float32Array, x: Float32Array, n: number, slots: Int32Array, ads: Adapter[], out: number, inF: number) {
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

describe.runIf(hasDevice)('cuda lora against float64 and the js backend', () => {
  const be = cuda as CudaBackend;

  function run(slotsList: number[], ads: Adapter[], out: number, inF: number, seed: number): void {
    const rng = new Rng(seed);
    const n = slotsList.length;
    const slots = Int32Array.from(slotsList);
    const x = rng.f32(n * inF);
    const y0 = rng.f32(n * out);
    const { y: ref, mag } = loraReference(y0, x, n, slots, ads, out, inF);
    const hc: LoraHandle[] = ads.map((a) => be.createLora(a.init));
    const hj: LoraHandle[] = ads.map((a) => js.createLora(a.init));
    const yc = y0.slice();
    const yj = y0.slice();
    be.lora(yc, x, n, slots, hc);
    js.lora(yj, x, n, slots, hj);
    const label = `lora n=${n} slots=[${slotsList.join(',')}]`;
    expectClose(yc, ref, mag, 1e-5, `${label} cuda vs float64`);
    expectClose(yc, yj, mag, 1e-5, `${label} cuda vs js`);
    for (let i = 0; i < n; i++) {
      if ((slots[i] as number) >= 0) continue;
      for (let j = 0; j < out; j++) expect(yc[i * out + j]).toBe(y0[i * out + j]);
    }
    for (const h of hc) be.release(h);
  }

  for (const [out, inF] of [
    [37, 33],
    [64, 48],
    [5, 129],
    [300, 520],
  ] as const) {
    describe(`${inF} → ${out}`, () => {
      const rng = new Rng(out * 31 + inF);
      // Ranks 1, 8, 16, 24 and 72 in one call; rowScale and bf16 factors on some.
      const ads = [
        adapter(rng, 1, out, inF, {}),
        adapter(rng, 8, out, inF, { rowScale: true }),
        adapter(rng, 16, out, inF, { bf16: true }),
        adapter(rng, 24, out, inF, { rowScale: true, bf16: true }),
        adapter(rng, 72, out, inF, {}),
      ];
      it('one row', () => run([2], ads, out, inF, 1));
      it('a decode batch: one row per slot, some without adapter (BGMV)', () => run([3, -1, 0, 1, 2, -1, 1, 0, 3, 4], ads, out, inF, 2));
      it('prefill segments of adjacent equal slots (SGMV)', () =>
        run([0, 0, 0, 1, 1, 1, 1, 1, -1, -1, 3, 3, 3, 3, 2, 2, 2, 4, 4], ads, out, inF, 3));
      it('scattered rows of the same slot', () => run([1, 0, 1, 3, 1, 0, -1, 1, 2, 1, 3, 0, 4], ads, out, inF, 4));
      it('a long segment (64 rows, one slot), then others', () =>
        run([...Array(64).fill(3), ...Array(17).fill(1), 0, -1, 2, 4], ads, out, inF, 5));
      it('all rows without adapter', () => run([-1, -1, -1], ads, out, inF, 6));
    });
  }

  it('bf16 factors round to nearest even', () => {
    const vals = Float32Array.of(1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -9, -3.3, 65504.7, 1e-40, 3.4e38);
    for (const v of vals) {
      const h = be.createLora({ rank: 1, out: 1, in: 1, A: Float32Array.of(v), B: Float32Array.of(1), dtype: 'bf16' });
      const y = new Float32Array(1);
      be.lora(y, Float32Array.of(1), 1, Int32Array.of(0), [h]);
      const bits = new Uint32Array(Float32Array.of(v).buffer)[0] as number;
      expect(y[0], `${v}`).toBe(bf16Value(((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff));
    }
  });
});

describe.runIf(hasDevice)('cuda rmsnorm, rope, siluMul, attention', () => {
  const be = cuda as CudaBackend;

  it.each([
    [1, 1],
    [3, 37],
    [17, 768],
    [64, 65],
    [2, 5000],
  ])('rmsnorm n=%i dim=%i, into y and in place', (n, dim) => {
    const rng = new Rng(n * dim);
    const x = rng.f32(n * dim, 3);
    const w = rng.f32(dim);
    const ref = new Float64Array(n * dim);
    for (let i = 0; i < n; i++) {
      let ss = 0;
      for (let j = 0; j < dim; j++) ss += (x[i * dim + j] as number) ** 2;
      const inv = 1 / Math.sqrt(ss / dim + 1e-5);
      for (let j = 0; j < dim; j++) ref[i * dim + j] = (x[i * dim + j] as number) * inv * (w[j] as number);
    }
    const y = new Float32Array(n * dim);
    be.rmsnorm(y, x, n, dim, w, 1e-5);
    expectClose(y, ref, ref.map(Math.abs), 1e-6, 'cuda rmsnorm');
    const inPlace = x.slice();
    be.rmsnorm(inPlace, inPlace, n, dim, w, 1e-5);
    expectClose(inPlace, ref, ref.map(Math.abs), 1e-6, 'cuda rmsnorm in place');
  });

  it.each([
    [1, 1, 2, 10000],
    [3, 4, 64, 10000],
    [17, 3, 6, 500000],
    [64, 2, 16, 10000],
    [5, 32, 128, 1000000],
  ])('rope n=%i heads=%i headDim=%i theta=%i', (n, heads, headDim, theta) => {
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
          const a = (positions[r] as number) / theta ** ((2 * i) / headDim);
          const o = (r * heads + h) * headDim;
          const x0 = x[o + i] as number;
          const x1 = x[o + i + half] as number;
          ref[o + i] = x0 * Math.cos(a) - x1 * Math.sin(a);
          ref[o + i + half] = x1 * Math.cos(a) + x0 * Math.sin(a);
          mag[o + i] = mag[o + i + half] = Math.abs(x0) + Math.abs(x1);
        }
      }
    }
    const y = x.slice();
    be.rope(y, n, heads, headDim, positions, theta);
    expectClose(y, ref, mag, 1e-6, 'cuda rope');
  });

  it.each([0, 1, 3, 17, 1000, 70001])('siluMul len=%i', (len) => {
    const rng = new Rng(len + 1);
    const gate = rng.f32(len, 12);
    if (len > 3) {
      gate[0] = -100;
      gate[1] = 100;
      gate[2] = 0;
    }
    const up = rng.f32(len, 2);
    const ref = Float64Array.from(gate, (g, i) => (g / (1 + Math.exp(-g))) * (up[i] as number));
    const g = gate.slice();
    be.siluMul(g, up, len);
    expectClose(g, ref, ref.map(Math.abs), 1e-6, 'cuda siluMul');
    const same = Float32Array.of(1, -2, 3);
    be.siluMul(same, same, 3);
    expectClose(same, [1 / (1 + Math.exp(-1)), 4 / (1 + Math.exp(2)), 9 / (1 + Math.exp(-3))], 10, 1e-7, 'aliased');
  });

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
          mag[(t * heads + h) * hd + c] = vmax * (1 + sens);
        }
      }
    }
    return { out, mag };
  }

  it.each([
    // nTokens, start, heads, kvHeads, headDim: every register width (≤ 32, 64, 128, 256) and the
    // shared-memory path (> 256), partial lane chunks, GQA groups, long caches.
    [1, 0, 1, 1, 1],
    [1, 40, 4, 4, 16],
    [3, 5, 6, 2, 33],
    [17, 0, 4, 1, 64],
    [64, 3, 8, 4, 32],
    [2, 300, 12, 12, 64],
    [3, 50, 4, 2, 100],
    [2, 20, 2, 1, 256],
    [2, 9, 2, 2, 300],
    [1, 2000, 8, 2, 128],
  ])('attention nTokens=%i start=%i heads=%i kvHeads=%i headDim=%i', (nTokens, start, heads, kvHeads, hd) => {
    const rng = new Rng(nTokens * 100 + start);
    const capacity = start + nTokens + 3;
    const kvDim = kvHeads * hd;
    const q = rng.f32(nTokens * heads * hd, 2);
    const kCache = rng.f32(capacity * kvDim, 2);
    const vCache = rng.f32(capacity * kvDim);
    kCache.fill(Number.NaN, (start + nTokens) * kvDim);
    vCache.fill(Number.NaN, (start + nTokens) * kvDim);
    const { out: ref, mag } = refAttention(q, kCache, vCache, nTokens, start, heads, kvHeads, hd);
    const out = new Float32Array(nTokens * heads * hd).fill(Number.NaN);
    be.attention({ out, q, nTokens, kCache, vCache, start, heads, kvHeads, headDim: hd });
    expectClose(out, ref, mag, 1e-5, 'cuda attention');
  });

  it('attention is stable for large scores', () => {
    const hd = 8;
    const q = new Float32Array(hd).fill(100);
    const kCache = new Float32Array(3 * hd).fill(100);
    kCache.fill(-100, hd, 2 * hd);
    const vCache = Float32Array.from({ length: 3 * hd }, (_, i) => Math.floor(i / hd));
    const out = new Float32Array(hd);
    be.attention({ out, q, nTokens: 1, kCache, vCache, start: 2, heads: 1, kvHeads: 1, headDim: hd });
    for (const o of out) expect(o).toBeCloseTo(1, 6);
  });
});

describe.runIf(hasDevice)('cuda handles and memory', () => {
  const be = cuda as CudaBackend;
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const MB = 2 ** 20;

  it('release frees device memory at once; twice is harmless; a released handle is refused', () => {
    gc(); // earlier tests' unreachable handles go now, not in the middle of the counting
    const before = be.memory().handleBytes;
    const w = be.createWeight({ dtype: 'f32', out: 4096, in: 4096, data: new Float32Array(4096 * 4096) });
    expect(be.memory().handleBytes - before).toBe(64 * MB);
    be.release(w);
    be.release(w);
    expect(be.memory().handleBytes).toBe(before);
    expect(() => be.matmul(new Float32Array(4096), new Float32Array(4096), 1, w)).toThrow(/released/);
    const h = be.createLora({ rank: 2, out: 3, in: 4, A: new Float32Array(8), B: new Float32Array(6) });
    expect(h.bytes).toBe(be.memory().handleBytes - before);
    be.release(h);
    expect(() => be.lora(new Float32Array(3), new Float32Array(4), 1, Int32Array.of(0), [h])).toThrow(/released/);
  });

  it('the finalizer frees an unreachable weight', async () => {
    gc();
    const before = be.memory().handleBytes;
    let w: unknown = be.createWeight({ dtype: 'bf16', out: 4096, in: 4096, data: new Uint16Array(4096 * 4096) });
    expect(w).toBeDefined();
    expect(be.memory().handleBytes - before).toBe(32 * MB);
    w = undefined;
    for (let i = 0; i < 5 && be.memory().handleBytes > before; i++) {
      gc();
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(be.memory().handleBytes).toBeLessThanOrEqual(before);
  });

  it('several JavaScript threads can use the module at once', async () => {
    const path = process.env.LORA_EDGE_CUDA_MODULE || new URL('../../build/Release/lora_edge_cuda.node', import.meta.url).pathname;
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const a = require(workerData.path);
      const out = 300, inF = 200, n = 3;
      const W = new Float32Array(out * inF).map((_, i) => ((i * 7919 + workerData.seed) % 101) / 101 - 0.5);
      const x = new Float32Array(n * inF).map((_, i) => ((i * 31 + workerData.seed) % 17) / 17 - 0.5);
      const w = a.createWeight({ dtype: 'f32', out, in: inF, data: W });
      let worst = 0;
      for (let rep = 0; rep < 100; rep++) {
        const y = new Float32Array(n * out);
        a.matmul(y, x, n, w);
        if (rep % 25 === 0) for (let i = 0; i < n; i++) for (let j = 0; j < out; j++) {
          let s = 0;
          for (let k = 0; k < inF; k++) s += W[j * inF + k] * x[i * inF + k];
          worst = Math.max(worst, Math.abs(s - y[i * out + j]));
        }
      }
      parentPort.postMessage(worst);`;
    const run = (seed: number) =>
      new Promise<number>((resolve, reject) => {
        const wk = new Worker(code, { eval: true, workerData: { path, seed } });
        wk.once('message', resolve);
        wk.once('error', reject);
      });
    const worst = await Promise.all([run(1), run(2), run(3)]);
    for (const e of worst) expect(e).toBeLessThan(1e-4);
  });
});

// The engine's golden generations on the GPU (engine.test.ts runs the same against js and
// cpu-native): stories260k's greedy ids equal llama2.c's, adapters' equal PEFT's merged and
// unmerged, a mixed batch gives each sequence its solo ids, NF4 equals the dequantized model.
// Generous timeouts: on a GPU these take seconds, under the CPU emulation (native/cuda/emu) minutes.
describe.runIf(hasDevice)('the engine on the cuda backend', { timeout: 600_000 }, () => {
  interface Case {
    prompt_ids: number[];
    greedy_ids: number[];
    last_prompt_logits: number[];
  }
  interface AdapterRef {
    generations: { prompt_ids: number[]; greedy_ids_merged: number[] }[];
  }
  let dir: ReturnType<typeof openModelDir>;
  let source: ReturnType<typeof modelSource>;
  let refs: Case[];
  let adapters: Map<string, ReturnType<typeof loadAdapterDir>>;
  let backend: Backend;
  let engine: Engine;
  const entry = (name: string, weight = 1): MixEntry => ({ id: name, adapter: adapters.get(name)!, weight });
  const maxAbsDiff = (a: Float32Array, b: number[]) => b.reduce((m, v, i) => Math.max(m, Math.abs((a[i] as number) - v)), 0);

  beforeAll(() => {
    dir = openModelDir(STORIES);
    source = modelSource(dir);
    refs = readJson<{ cases: Case[] }>(join(STORIES, 'reference.json')).cases;
    adapters = new Map(ALL_ADAPTERS.map((n) => [n, loadAdapterDir(join(ADAPTERS, n))]));
    backend = createCudaBackend();
    engine = new Engine(backend, loadRunnerModel(backend, source), source);
  });
  afterAll(() => dir?.close());

  it('stories260k: greedy ids equal llama2.c, first logits within 1e-4', async () => {
    for (const c of refs) {
      const r = await engine.generate({ prompt: c.prompt_ids, maxTokens: c.greedy_ids.length, ignoreEos: true, returnFirstLogits: true });
      expect(r.ids).toEqual(c.greedy_ids);
      expect(maxAbsDiff(r.firstLogits!, c.last_prompt_logits)).toBeLessThan(1e-4);
    }
  });

  it('an NF4 model: greedy ids and logits equal the reference decoder on the dequantized weights', async () => {
    const tensors = new Map<string, Tensor>();
    const dequantized = new Map<string, Tensor>();
    for (const [name, t] of dir.tensors) {
      const tensor = t.source.read(t.info);
      dequantized.set(name, tensor);
      if (!isQuantizedLinear(name)) {
        tensors.set(name, tensor);
        continue;
      }
      const q = quantizeNf4(tensor, { doubleQuant: true });
      for (const b of toBnbTensors(name, q)) tensors.set(b.name, b);
      dequantized.set(name, dequantizeNf4Tensor(q));
    }
    const nf4Source = { config: source.config, get: (n: string) => tensors.get(n) };
    const nf4 = new Engine(backend, loadRunnerModel(backend, nf4Source, { decoders: [nf4Decoder] }), nf4Source);
    const reference = loadLlamaWeights(source.config, (n) => dequantized.get(n));
    for (const c of refs) {
      const r = await nf4.generate({ prompt: c.prompt_ids, maxTokens: 8, ignoreEos: true, returnFirstLogits: true });
      const want = greedy(reference, c.prompt_ids, 8);
      expect(r.ids).toEqual(want.ids);
      expect(maxAbsDiff(r.firstLogits!, [...want.firstLogits])).toBeLessThan(1e-3);
    }
  });

  it.each(ALL_ADAPTERS)('%s: merged and unmerged greedy ids equal PEFT', async (name) => {
    const ref = readJson<AdapterRef>(join(ADAPTERS, name, 'reference.json'));
    for (const g of ref.generations) {
      for (const mode of ['merged', 'unmerged'] as const) {
        const r = await engine.generate({
          prompt: g.prompt_ids,
          maxTokens: g.greedy_ids_merged.length,
          mix: [entry(name)],
          mode,
          ignoreEos: true,
        });
        expect(r.ids, `${mode} ${g.prompt_ids}`).toEqual(g.greedy_ids_merged);
      }
    }
  });

  it('a batch of four adapters, the bare base and the weighted mix gives each sequence its solo ids', async () => {
    const mixRef = readJson<{ adapters: string[]; weights: number[]; prompt_ids: number[]; greedy_ids_unmerged: number[] }>(
      join(ADAPTERS, 'mixes', 'reference.json'),
    );
    const jobs = [
      ...['tiny-qv-r4', 'tiny-all-r8', 'tiny-rslora-r8', 'tiny-dora-r4'].map((name) => {
        const g = readJson<AdapterRef>(join(ADAPTERS, name, 'reference.json')).generations[1]!;
        return { req: { prompt: g.prompt_ids, mix: [entry(name)] }, want: g.greedy_ids_merged };
      }),
      { req: { prompt: refs[1]!.prompt_ids }, want: refs[1]!.greedy_ids.slice(0, 32) },
      {
        req: { prompt: mixRef.prompt_ids, mix: mixRef.adapters.map((a, i) => entry(a, mixRef.weights[i])) },
        want: mixRef.greedy_ids_unmerged,
      },
    ];
    const results = await Promise.all(jobs.map((j) => engine.generate({ ...j.req, maxTokens: j.want.length, ignoreEos: true })));
    for (const [i, r] of results.entries()) expect(r.ids, `job ${i}`).toEqual(jobs[i]!.want);
  });
});
