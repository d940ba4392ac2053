import { describe, expect, it } from 'vitest';
import { JsBackend } from './js.ts';
import { createNativeBackend, loadNativeAddon } from './native.ts';
import { NF4_TABLE } from './testing.ts';
import type { Backend, LoraInit, WeightInit } from './types.ts';

const native = createNativeBackend();
const js = new JsBackend();

// Deliberately wrong arguments: the casts only get them past the compiler.
// biome-ignore lint/suspicious/noExplicitAny: the point is to pass what the types forbid
const bad = (v: unknown): any => v;

const f32w = (): WeightInit => ({ dtype: 'f32', out: 3, in: 4, data: new Float32Array(12) });
const loraInit = (): LoraInit => ({ rank: 2, out: 3, in: 4, A: new Float32Array(8), B: new Float32Array(6) });

describe.each([
  ['cpu-native', native],
  ['js', js],
] as [string, Backend][])('the %s backend refuses bad arguments', (_name, be) => {
  const other = be === native ? js : native;

  it('createWeight', () => {
    expect(() => be.createWeight(bad(undefined))).toThrow(TypeError);
    expect(() => be.createWeight(bad(42))).toThrow(TypeError);
    expect(() => be.createWeight({ ...f32w(), dtype: bad('f64') })).toThrow(RangeError);
    expect(() => be.createWeight({ ...f32w(), dtype: bad(1) })).toThrow(TypeError);
    expect(() => be.createWeight({ ...f32w(), data: new Float32Array(11) })).toThrow(RangeError);
    expect(() => be.createWeight({ ...f32w(), data: new Float32Array(13) })).toThrow(RangeError);
    expect(() => be.createWeight({ ...f32w(), data: new Uint16Array(12) })).toThrow(TypeError);
    expect(() => be.createWeight({ ...f32w(), data: bad([0, 1, 2]) })).toThrow(TypeError);
    expect(() => be.createWeight({ ...f32w(), out: 0 })).toThrow(RangeError);
    expect(() => be.createWeight({ ...f32w(), out: 1.5 })).toThrow(RangeError);
    expect(() => be.createWeight({ ...f32w(), out: -3 })).toThrow(RangeError);
    expect(() => be.createWeight({ ...f32w(), out: bad('3') })).toThrow(TypeError);
    expect(() => be.createWeight({ ...f32w(), in: Number.NaN })).toThrow(RangeError);
    expect(() => be.createWeight({ ...f32w(), out: 2 ** 40 })).toThrow(RangeError);
    expect(() => be.createWeight({ dtype: 'bf16', out: 3, in: 4, data: new Float32Array(12) })).toThrow(TypeError);
    expect(() => be.createWeight({ dtype: 'f16', out: 3, in: 4, data: new Uint16Array(3) })).toThrow(RangeError);
  });

  it('createWeight nf4', () => {
    const ok = (): WeightInit => ({
      dtype: 'nf4',
      out: 3,
      in: 5,
      data: new Uint8Array(8),
      nf4: { blocksize: 4, absmax: new Float32Array(4), quantMap: NF4_TABLE },
    });
    be.release?.(be.createWeight(ok()));
    expect(() => be.createWeight({ ...ok(), nf4: undefined })).toThrow(TypeError);
    expect(() => be.createWeight({ ...ok(), data: new Uint8Array(7) })).toThrow(RangeError);
    expect(() => be.createWeight({ ...ok(), nf4: { blocksize: 4, absmax: new Float32Array(3), quantMap: NF4_TABLE } })).toThrow(RangeError);
    expect(() => be.createWeight({ ...ok(), nf4: { blocksize: 0, absmax: new Float32Array(4), quantMap: NF4_TABLE } })).toThrow(RangeError);
    expect(() => be.createWeight({ ...ok(), nf4: { blocksize: 4, absmax: new Float32Array(4), quantMap: new Float32Array(15) } })).toThrow(
      RangeError,
    );
    expect(() => be.createWeight({ ...ok(), nf4: { blocksize: 4, absmax: bad(new Float64Array(4)), quantMap: NF4_TABLE } })).toThrow(
      TypeError,
    );
  });

  it('createLora', () => {
    expect(() => be.createLora(bad(null))).toThrow(TypeError);
    expect(() => be.createLora({ ...loraInit(), rank: 0 })).toThrow(RangeError);
    expect(() => be.createLora({ ...loraInit(), A: new Float32Array(7) })).toThrow(RangeError);
    expect(() => be.createLora({ ...loraInit(), B: new Float32Array(8) })).toThrow(RangeError);
    expect(() => be.createLora({ ...loraInit(), rowScale: new Float32Array(4) })).toThrow(RangeError);
    expect(() => be.createLora({ ...loraInit(), rowScale: bad([1, 1, 1]) })).toThrow(TypeError);
    expect(() => be.createLora({ ...loraInit(), dtype: bad('f16') })).toThrow(RangeError);
    be.release?.(be.createLora({ ...loraInit(), rowScale: undefined }));
  });

  it('matmul', () => {
    const w = be.createWeight(f32w());
    const y = new Float32Array(6);
    const x = new Float32Array(8);
    be.matmul(y, x, 2, w);
    expect(() => be.matmul(new Float32Array(5), x, 2, w)).toThrow(RangeError);
    expect(() => be.matmul(y, new Float32Array(7), 2, w)).toThrow(RangeError);
    expect(() => be.matmul(y, x, -1, w)).toThrow(RangeError);
    expect(() => be.matmul(y, x, 1.5, w)).toThrow(RangeError);
    expect(() => be.matmul(y, bad(new Float64Array(8)), 2, w)).toThrow(TypeError);
    expect(() => be.matmul(bad(null), x, 2, w)).toThrow(TypeError);
    expect(() => be.matmul(y, x, 2, bad({ dtype: 'f32', out: 3, in: 4 }))).toThrow(TypeError);
    expect(() => be.matmul(y, x, 2, bad(be.createLora(loraInit())))).toThrow(TypeError);
    expect(() => be.matmul(y, x, 2, other.createWeight(f32w()))).toThrow(TypeError);
    const buf = new Float32Array(20);
    expect(() => be.matmul(buf.subarray(0, 6), buf.subarray(4, 12), 2, w)).toThrow(RangeError);
    be.release?.(w);
    be.release?.(w); // twice is harmless
    expect(() => be.matmul(y, x, 2, w)).toThrow(/released/);
  });

  it('lora', () => {
    const h = be.createLora(loraInit());
    const h2 = be.createLora({ rank: 1, out: 3, in: 5, A: new Float32Array(5), B: new Float32Array(3) });
    const y = new Float32Array(6);
    const x = new Float32Array(8);
    be.lora(y, x, 2, Int32Array.of(0, -1), [h]);
    expect(() => be.lora(y, x, 2, Int32Array.of(0), [h])).toThrow(RangeError);
    expect(() => be.lora(y, x, 2, Int32Array.of(0, 1), [h])).toThrow(RangeError);
    expect(() => be.lora(y, x, 2, bad(Uint32Array.of(0, 0)), [h])).toThrow(TypeError);
    expect(() => be.lora(y, x, 2, Int32Array.of(0, 0), bad(h))).toThrow(TypeError);
    expect(() => be.lora(y, x, 2, Int32Array.of(0, 0), [h, h2])).toThrow(RangeError);
    expect(() => be.lora(y, x, 2, Int32Array.of(0, 0), [bad({})])).toThrow(TypeError);
    expect(() => be.lora(y, x, 2, Int32Array.of(0, 0), [bad(be.createWeight(f32w()))])).toThrow(TypeError);
    expect(() => be.lora(y, x, 2, Int32Array.of(0, 0), [other.createLora(loraInit())])).toThrow(TypeError);
    expect(() => be.lora(new Float32Array(5), x, 2, Int32Array.of(0, 0), [h])).toThrow(RangeError);
    expect(() => be.lora(y, new Float32Array(7), 2, Int32Array.of(0, 0), [h])).toThrow(RangeError);
    be.release?.(h);
    expect(() => be.lora(y, x, 2, Int32Array.of(-1, -1), [h])).toThrow(/released/);
  });

  it('rmsnorm, rope, siluMul', () => {
    const x = new Float32Array(12);
    const w = new Float32Array(4);
    be.rmsnorm(x, x, 3, 4, w, 1e-5);
    expect(() => be.rmsnorm(x, x, 3, 4, new Float32Array(3), 1e-5)).toThrow(RangeError);
    expect(() => be.rmsnorm(new Float32Array(11), x, 3, 4, w, 1e-5)).toThrow(RangeError);
    expect(() => be.rmsnorm(x, x, 3, 0, w, 1e-5)).toThrow(RangeError);
    expect(() => be.rmsnorm(x, x, 3, 4, w, Number.NaN)).toThrow(RangeError);
    expect(() => be.rmsnorm(x.subarray(1), x, 2, 4, w, 1e-5)).toThrow(RangeError);
    expect(() => be.rope(x, 3, 1, 3, new Int32Array(3), 10000)).toThrow(RangeError);
    expect(() => be.rope(x, 3, 1, 4, new Int32Array(2), 10000)).toThrow(RangeError);
    expect(() => be.rope(x, 3, 1, 4, bad(new Float32Array(3)), 10000)).toThrow(TypeError);
    expect(() => be.rope(x, 3, 1, 4, new Int32Array(3), 0)).toThrow(RangeError);
    expect(() => be.rope(x, 4, 1, 4, new Int32Array(4), 10000)).toThrow(RangeError);
    expect(() => be.siluMul(x, new Float32Array(11), 12)).toThrow(RangeError);
    expect(() => be.siluMul(x, x.subarray(2), 8)).toThrow(RangeError);
    expect(() => be.siluMul(x, x, bad('12'))).toThrow(TypeError);
  });

  it('attention', () => {
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
    be.attention(args());
    expect(() => be.attention(bad(undefined))).toThrow(TypeError);
    expect(() => be.attention({ ...args(), kvHeads: 3 })).toThrow(RangeError);
    expect(() => be.attention({ ...args(), start: 3 })).toThrow(RangeError);
    expect(() => be.attention({ ...args(), q: new Float32Array(7) })).toThrow(RangeError);
    expect(() => be.attention({ ...args(), vCache: bad(undefined) })).toThrow(TypeError);
    expect(() => be.attention({ ...args(), headDim: bad(undefined) })).toThrow(TypeError);
    const a = args();
    expect(() => be.attention({ ...a, out: a.q })).toThrow(RangeError);
  });

  it('release of a foreign object', () => {
    expect(() => be.release?.(bad({ dtype: 'f32', out: 1, in: 1 }))).toThrow(TypeError);
  });
});

describe('the raw addon survives garbage', () => {
  const { addon } = loadNativeAddon();
  const garbage: unknown[] = [undefined, null, 0, -1, 1.5, Number.NaN, 2 ** 53, '', 'x', {}, [], [1, 2], () => 1, Symbol('s'), 10n];
  garbage.push(new Float32Array(3), new Int32Array(1), new Uint8Array(0), new ArrayBuffer(8), new DataView(new ArrayBuffer(4)));

  it('every entry point throws a JavaScript error for every kind of wrong argument', () => {
    expect(addon).toBeDefined();
    const fns = Object.entries(addon as object) as [string, (...a: unknown[]) => unknown][];
    let calls = 0;
    for (const [name, fn] of fns) {
      if (name === 'threads' || name === 'isa') continue; // no arguments to get wrong
      for (const g of garbage) {
        for (const argc of [0, 1, 3, 6]) {
          const args = Array.from({ length: argc }, () => g);
          calls++;
          expect(() => fn(...args), `${name}(${argc} × ${String(typeof g)})`).toThrow();
        }
      }
    }
    expect(calls).toBeGreaterThan(500);
    expect(addon?.threads()).toBeGreaterThan(0);
  });
});
