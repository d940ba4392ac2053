import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fixture, readBytes, readJson } from '../../../test/fixtures.ts';
import { LoraEdgeError } from '../errors.ts';
import { readSafetensors, type SafetensorsFile } from '../safetensors/read.ts';
import { type NamedTensor, serializeSafetensors } from '../safetensors/write.ts';
import { asFloat32Array, fromFloat32, type Tensor, toFloat32 } from '../tensor/tensor.ts';
import {
  bucketize,
  createDynamicMapSigned,
  dequantizeNf4,
  dequantizeNf4Tensor,
  encodeQuantState,
  fromBnbTensors,
  midpoints,
  NF4_CODE,
  type Nf4Quantized,
  nf4BlockAbsmax,
  pyFloatRepr,
  quantizeNf4,
  quantStateJson,
  toBnbTensors,
  torchLinspaceF32,
  torchMeanF32,
} from './index.ts';

interface Case {
  name: string;
  shape: number[];
  input_dtype: string;
  numel: number;
  n_blocks: number;
  tail_block_len: number | null;
  compress_statistics: boolean;
  file: string;
  offset: number | null;
  quant_state_packed_json: Record<string, unknown>;
}
interface Manifest {
  nf4_code: number[];
  cases: Case[];
}

const manifest = readJson<Manifest>(fixture('nf4', 'manifest.json'));
const table = readSafetensors(readBytes(fixture('nf4', 'nf4_table.safetensors')));
const open = (c: Case): SafetensorsFile => readSafetensors(readBytes(fixture('nf4', c.file)));
const getter = (f: SafetensorsFile) => (name: string) => (f.has(name) ? f.tensor(name) : undefined);

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.slice().buffer);
}
function f32(t: Tensor): Float32Array {
  return toFloat32(t, { copy: true });
}
function bytesOfF32(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
/** Distance in float32 units in the last place. */
function ulps(a: number, b: number): number {
  const u = new Int32Array(Float32Array.of(a, b).buffer);
  const key = (x: number): number => (x < 0 ? -(x & 0x7fffffff) : x);
  return Math.abs(key(u[0] as number) - key(u[1] as number));
}
function unpack(packed: Uint8Array): Uint8Array {
  const out = new Uint8Array(packed.length * 2);
  packed.forEach((v, i) => {
    out[2 * i] = v >> 4;
    out[2 * i + 1] = v & 15;
  });
  return out;
}
function expectError(fn: () => unknown, code: string, tensor?: string): LoraEdgeError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(LoraEdgeError);
    const err = e as LoraEdgeError;
    expect(err.code).toBe(code);
    if (tensor !== undefined) expect(err.tensor).toBe(tensor);
    return err;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

/** The reference, written the slow obvious way from bitsandbytes' kernel: float32 products, linear count of midpoints below. */
function referenceCodes(x: Float32Array, blocksize: number): { codes: Uint8Array; absmax: Float32Array } {
  const bounds = midpoints(NF4_CODE);
  const n = x.length;
  const codes = new Uint8Array(n + (n & 1)).fill(7);
  const absmax = new Float32Array(Math.ceil(n / blocksize));
  for (let b = 0; b < absmax.length; b++) {
    const s = b * blocksize;
    const e = Math.min(s + blocksize, n);
    let am = 0;
    for (let i = s; i < e; i++) am = Math.max(am, Math.abs(x[i] as number));
    const c = Math.max(am, Math.fround(1e-38));
    const tail = e - s < blocksize;
    absmax[b] = tail ? c : am;
    const inv = Math.fround(1 / c);
    for (let i = s; i < e; i++) {
      const v = Math.fround(tail ? (x[i] as number) / c : (x[i] as number) * inv);
      codes[i] = bounds.filter((m) => m < v).length;
    }
  }
  return { codes, absmax };
}

describe('NF4 tables', () => {
  it('NF4 code equals the fixture table and the manifest', () => {
    expect(bits(NF4_CODE)).toEqual(bits(f32(table.tensor('nf4_code'))));
    expect(Array.from(NF4_CODE)).toEqual(manifest.nf4_code);
  });

  it('create_dynamic_map(signed=True) is reproduced bit for bit', () => {
    const dyn = createDynamicMapSigned();
    expect(dyn.length).toBe(256);
    expect(bits(dyn)).toEqual(bits(f32(table.tensor('dynamic_map_signed'))));
  });

  it('torch linspace emulation keeps the ends and the symmetric halves', () => {
    for (const steps of [1, 2, 3, 5, 9, 17, 33, 65, 129]) {
      const l = torchLinspaceF32(0.1, 1, steps);
      expect(l[0]).toBe(Math.fround(0.1));
      if (steps > 1) expect(l[steps - 1]).toBe(1);
      for (let i = 1; i < steps; i++) expect(l[i] as number).toBeGreaterThan(l[i - 1] as number);
    }
  });

  it('bucketize sends a midpoint to the lower code', () => {
    const b = midpoints(NF4_CODE);
    for (let i = 0; i < b.length; i++) {
      expect(bucketize(b, b[i] as number)).toBe(i);
      expect(bucketize(b, Math.fround((b[i] as number) + 1e-7))).toBe(i + 1);
    }
  });
});

describe('NF4 quantize matches bitsandbytes on every fixture case', () => {
  it.each(manifest.cases.map((c) => [c.name, c] as const))('%s', (_, c) => {
    const f = open(c);
    const bf16 = c.input_dtype === 'bfloat16';
    const input = bf16 ? f.tensor('ref.input_bf16') : { ...f.tensor('ref.input'), shape: c.shape };
    const q = quantizeNf4(input, { doubleQuant: c.compress_statistics });
    expect(q.shape).toEqual(c.shape);
    expect(q.dtype).toBe(bf16 ? 'BF16' : 'F32');
    expect(q.packed).toEqual(f.tensor('weight').data);
    expect(unpack(q.packed)).toEqual(f.tensor('ref.codes_unpacked').data);
    expect(bits(q.quantMap)).toEqual(bits(f32(f.tensor('weight.quant_map'))));
    if (q.doubleQuant) {
      const ref = f32(f.tensor('ref.offset'))[0] as number;
      expect(ulps(q.offset, ref)).toBeLessThanOrEqual(2);
      expect(ulps(q.offset, c.offset as number)).toBeLessThanOrEqual(2);
      expect(q.absmaxCodes).toEqual(f.tensor('weight.absmax').data);
      expect(bits(q.nestedAbsmax)).toEqual(bits(f32(f.tensor('weight.nested_absmax'))));
      expect(bits(q.nestedQuantMap)).toEqual(bits(f32(f.tensor('weight.nested_quant_map'))));
      expect(bits(nf4BlockAbsmax(q))).toEqual(bits(f32(f.tensor('ref.absmax_dequantized'))));
    } else {
      expect(q.doubleQuant).toBe(false);
      expect(bits(nf4BlockAbsmax(q))).toEqual(bits(f32(f.tensor('weight.absmax'))));
    }
    expect(nf4BlockAbsmax(q).length).toBe(c.n_blocks);

    if (bf16) {
      const out = dequantizeNf4Tensor(q);
      expect(out.dtype).toBe('BF16');
      expect(out.data).toEqual(f.tensor('ref.dequantized_bf16').data);
      expect(bits(f32(out))).toEqual(bits(f32(f.tensor('ref.dequantized'))));
    } else {
      expect(bits(dequantizeNf4(q))).toEqual(bits(f32(f.tensor('ref.dequantized'))));
      expect(dequantizeNf4Tensor(q).data).toEqual(f.tensor('ref.dequantized').data);
    }

    // The quant state: same decoded content (offset to the ulp), and the same bytes when the offsets agree.
    const json = JSON.parse(new TextDecoder().decode(encodeQuantState(quantStateJson(q)))) as Record<string, unknown>;
    const want = c.quant_state_packed_json;
    expect(Object.keys(json)).toEqual(Object.keys(want));
    expect({ ...json, nested_offset: 0 }).toEqual({ ...want, nested_offset: 0 });
    if (q.doubleQuant) expect(ulps(json.nested_offset as number, want.nested_offset as number)).toBeLessThanOrEqual(2);
    const ours = toBnbTensors('weight', q);
    const fixtureNames = f.names().filter((n) => n.startsWith('weight'));
    expect(ours.map((t) => t.name)).toEqual(fixtureNames);
    if (!q.doubleQuant || q.offset === c.offset) {
      for (const t of ours) {
        const ref = f.tensor(t.name);
        expect([t.name, t.dtype, t.shape]).toEqual([t.name, ref.dtype, ref.shape]);
        expect(t.data).toEqual(ref.data);
      }
    }
  });
});

describe('NF4 read from bitsandbytes tensors', () => {
  it.each(manifest.cases.map((c) => [c.name, c] as const))(
    '%s: fromBnbTensors -> dequantize and -> toBnbTensors byte-identical',
    (_, c) => {
      const f = open(c);
      const q = fromBnbTensors(getter(f), 'weight');
      expect(q.doubleQuant).toBe(c.compress_statistics);
      expect(q.shape).toEqual(c.shape);
      const out = dequantizeNf4Tensor(q);
      const ref = c.input_dtype === 'bfloat16' ? f.tensor('ref.dequantized_bf16') : f.tensor('ref.dequantized');
      expect(out.data).toEqual(ref.data);
      for (const t of toBnbTensors('weight', q)) {
        const r = f.tensor(t.name);
        expect([t.dtype, t.shape]).toEqual([r.dtype, r.shape]);
        expect(t.data).toEqual(r.data);
      }
    },
  );
});

function randomWeights(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const next = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = (next() + next() + next() - 1.5) * 0.05 * (i % 97 === 0 ? 20 : 1);
  return x;
}

describe('NF4 quantize agrees with the slow reference', () => {
  it.each([32, 64, 128, 256, 1024, 4096])('blocksize %i, random data, even and odd lengths', (bs) => {
    for (const n of [bs * 7, bs * 7 + 1, bs * 3 + 6, 5, 1]) {
      const x = randomWeights(n, bs + n);
      const q = quantizeNf4(x, { blocksize: bs });
      const ref = referenceCodes(x, bs);
      expect(unpack(q.packed)).toEqual(ref.codes);
      expect(bits(nf4BlockAbsmax(q))).toEqual(bits(ref.absmax));
    }
  });

  it('values on and around every midpoint and every lookup-cell edge', () => {
    const bounds = midpoints(NF4_CODE);
    const probes: number[] = [0, -0, 1, -1, 2 ** -149, -(2 ** -149), 1e-30, -1e-30];
    const step = (v: number, k: number): number => {
      const a = new Float32Array([v]);
      const u = new Int32Array(a.buffer);
      u[0] = (u[0] as number) + (v >= 0 ? k : -k);
      return a[0] as number;
    };
    const near = (v: number): void => {
      for (let k = -3; k <= 3; k++) probes.push(step(Math.fround(v), k));
    };
    bounds.forEach(near);
    for (let c = -2048; c <= 2048; c += 1) near(c / 2048);
    const usable = probes.filter((v) => Math.abs(v) <= 1);
    for (const scale of [1, 0.37, 3.1e-3, 1234.5, 1e-39]) {
      // each block: the absmax element first, then probes scaled (products round like bitsandbytes' do)
      const x = new Float32Array(64 * Math.ceil(usable.length / 63) + 64 + 5);
      let j = 0;
      for (let i = 0; i < x.length; i++) x[i] = i % 64 === 0 ? scale : Math.fround((usable[j++ % usable.length] as number) * scale);
      const q = quantizeNf4(x);
      const ref = referenceCodes(x, 64);
      expect(unpack(q.packed)).toEqual(ref.codes);
      expect(bits(nf4BlockAbsmax(q))).toEqual(bits(ref.absmax));
    }
  });

  it('zero blocks, a zero tail and tiny magnitudes', () => {
    const x = new Float32Array(64 * 3 + 3);
    x[70] = 1e-40; // subnormal absmax below the 1e-38 clamp
    x[130] = -2.5;
    const q = quantizeNf4(x);
    expect(q.doubleQuant).toBe(false);
    const ref = referenceCodes(x, 64);
    expect(unpack(q.packed)).toEqual(ref.codes);
    const absmax = nf4BlockAbsmax(q);
    expect(Array.from(absmax)).toEqual([0, Math.fround(1e-40), 2.5, Math.fround(1e-38)]);
    expect(Array.from(dequantizeNf4(q)).every((v, i) => v === 0 || i === 130 || i === 70)).toBe(true);
    expect(dequantizeNf4(q)[130]).toBe(-2.5);
  });

  it('F16 input quantizes its float32 values and dequantizes back to F16', () => {
    const x = randomWeights(1000, 5);
    const t = fromFloat32(x, 'F16', [10, 100]);
    const q = quantizeNf4(t, { doubleQuant: true });
    const ref = quantizeNf4(toFloat32(t), { doubleQuant: true, shape: [10, 100] });
    expect(q.packed).toEqual(ref.packed);
    expect(q.dtype).toBe('F16');
    const out = dequantizeNf4Tensor(q);
    expect(out.dtype).toBe('F16');
    expect(out.shape).toEqual([10, 100]);
    expect(out.data).toEqual(fromFloat32(dequantizeNf4(ref), 'F16', [10, 100]).data);
  });

  it('a scalar and a one-element tensor', () => {
    const q = quantizeNf4(Float32Array.of(-3), { shape: [] });
    expect(q.packed).toEqual(Uint8Array.of(0x07));
    expect(Array.from(dequantizeNf4(q))).toEqual([-3]);
    expect(toBnbTensors('w', q).find((t) => t.name === 'w')?.shape).toEqual([1, 1]);
  });

  it('double quant of many blocks (several 256-blocks and a tail)', () => {
    const x = randomWeights(64 * 700 + 10, 9);
    const q = quantizeNf4(x, { doubleQuant: true });
    if (!q.doubleQuant) throw new Error('expected double quant');
    expect(q.nestedAbsmax.length).toBe(3);
    const plain = nf4BlockAbsmax(quantizeNf4(x));
    const approx = nf4BlockAbsmax(q);
    // 8-bit dynamic codes: the error stays under 1% of the largest |absmax - offset|
    const spread = Math.max(...Array.from(plain, (v) => Math.abs(v - q.offset)));
    for (let i = 0; i < plain.length; i++) expect(Math.abs((approx[i] as number) - (plain[i] as number))).toBeLessThan(0.01 * spread);
    // the mean in PyTorch's order stays within a few ulp of the exact mean
    let s = 0;
    for (const v of plain) s += v;
    expect(ulps(torchMeanF32(plain), Math.fround(s / plain.length))).toBeLessThanOrEqual(4);
  });
});

describe('NF4 round trip through safetensors', () => {
  const configs = [
    { n: 4096, blocksize: 64, doubleQuant: false, dtype: 'F32' },
    { n: 4097, blocksize: 64, doubleQuant: true, dtype: 'F32' },
    { n: 33 * 129, blocksize: 32, doubleQuant: true, dtype: 'BF16' },
    { n: 10_000, blocksize: 4096, doubleQuant: false, dtype: 'F16' },
    { n: 3, blocksize: 128, doubleQuant: true, dtype: 'F32' },
  ] as const;
  it.each(configs.map((c) => [`${c.n} ${c.dtype} bs${c.blocksize}${c.doubleQuant ? ' dq' : ''}`, c] as const))('%s', (_, c) => {
    const x = randomWeights(c.n, c.n);
    const q = quantizeNf4(fromFloat32(x, c.dtype, [c.n]), { blocksize: c.blocksize, doubleQuant: c.doubleQuant });
    const tensors = toBnbTensors('model.layers.0.mlp.up_proj.weight', q);
    const file = readSafetensors(serializeSafetensors(tensors));
    const back = fromBnbTensors(getter(file), 'model.layers.0.mlp.up_proj.weight');
    expect(back.doubleQuant).toBe(c.doubleQuant);
    expect(back.dtype).toBe(c.dtype);
    expect(back.blocksize).toBe(c.blocksize);
    expect(back.packed).toEqual(q.packed);
    expect(bits(dequantizeNf4(back))).toEqual(bits(dequantizeNf4(q)));
    expect(dequantizeNf4Tensor(back).data).toEqual(dequantizeNf4Tensor(q).data);
    if (back.doubleQuant && q.doubleQuant) expect(back.offset).toBe(q.offset);
    // NF4 error: at most half the widest code gap times absmax
    const xs = toFloat32(fromFloat32(x, c.dtype, [c.n]));
    const err = Math.max(...Array.from(dequantizeNf4(q), (v, i) => Math.abs(v - (xs[i] as number))));
    expect(err).toBeLessThan(0.2 * Math.max(...Array.from(x, Math.abs)));
  });
});

describe('NF4 refuses bad input', () => {
  it.each([16, 48, 100, 8192, 64.5, 0, -64, Number.NaN])('blocksize %s', (blocksize) => {
    const err = expectError(() => quantizeNf4(new Float32Array(256), { blocksize }), 'invalid_argument');
    expect(err.field).toBe('blocksize');
  });

  it('NaN and Inf, in a full block, in the tail, in an F16 tensor', () => {
    const x = randomWeights(200, 1);
    x[77] = Number.NaN;
    let err = expectError(() => quantizeNf4(x, { name: 'w.q' }), 'non_finite_value', 'w.q');
    expect(err.message).toContain('element 77 is NaN');
    x[77] = 0;
    x[199] = Number.NEGATIVE_INFINITY;
    err = expectError(() => quantizeNf4(x), 'non_finite_value');
    expect(err.message).toContain('element 199 is -Infinity');
    x[199] = 0;
    x[3] = Number.POSITIVE_INFINITY;
    expectError(() => quantizeNf4(x, { doubleQuant: true }), 'non_finite_value');
    const h = fromFloat32(Float32Array.of(1, 2, 70000), 'F16', [3]);
    expect(expectError(() => quantizeNf4(h), 'non_finite_value').message).toContain('element 2 is Infinity');
  });

  it('empty tensors, integer dtypes, shapes that do not fit', () => {
    expectError(() => quantizeNf4(new Float32Array(0)), 'invalid_argument');
    expectError(() => quantizeNf4({ dtype: 'F32', shape: [0, 4], data: new Uint8Array(0) }), 'invalid_argument');
    expectError(() => quantizeNf4({ dtype: 'I32', shape: [4], data: new Uint8Array(16) }), 'invalid_argument');
    expectError(() => quantizeNf4(new Float32Array(10), { shape: [3, 3] }), 'invalid_argument');
    expectError(() => quantizeNf4({ dtype: 'F32', shape: [3], data: new Uint8Array(16) }), 'invalid_argument');
  });

  it('inconsistent quantized states are refused before dequantizing', () => {
    const q = quantizeNf4(randomWeights(300, 3));
    expectError(() => dequantizeNf4({ ...q, packed: q.packed.subarray(1) }), 'nf4_invalid');
    expectError(() => dequantizeNf4({ ...q, shape: [301] }), 'nf4_invalid');
    expectError(() => dequantizeNf4({ ...q, blocksize: 48 }), 'nf4_invalid');
    expectError(() => dequantizeNf4(q, new Float32Array(3)), 'invalid_argument');
  });
});

/** A valid tensor map, mutable, for the bnb tests. */
function bnbMap(doubleQuant: boolean, n = 1000): Map<string, Tensor> {
  const q = quantizeNf4(randomWeights(n, 11), { doubleQuant, shape: [n] });
  return new Map(toBnbTensors('w', q).map((t: NamedTensor) => [t.name, { dtype: t.dtype, shape: [...t.shape], data: t.data.slice() }]));
}
const fromMap = (m: Map<string, Tensor>): Nf4Quantized => fromBnbTensors((name) => m.get(name), 'w');
const json = (s: Record<string, unknown>): Tensor => {
  const data = new TextEncoder().encode(JSON.stringify(s));
  return { dtype: 'U8', shape: [data.length], data };
};
const QS = 'w.quant_state.bitsandbytes__nf4';

describe('fromBnbTensors refuses inconsistent tensors, naming them', () => {
  const base = { quant_type: 'nf4', blocksize: 64, dtype: 'float32', shape: [1000] };
  const cases: [string, boolean, (m: Map<string, Tensor>) => void, string][] = [
    ['no quant state', false, (m) => m.delete(QS), QS],
    [
      'an FP4 quant state',
      false,
      (m) => m.set('w.quant_state.bitsandbytes__fp4', m.get(QS)!).delete(QS),
      'w.quant_state.bitsandbytes__fp4',
    ],
    ['quant state is not JSON', false, (m) => m.set(QS, { dtype: 'U8', shape: [3], data: Uint8Array.of(123, 34, 0) }), QS],
    ['quant state is F32', false, (m) => m.set(QS, { ...m.get(QS)!, dtype: 'F32', shape: [m.get(QS)!.data.length / 4] }), QS],
    ['quant_type fp4', false, (m) => m.set(QS, json({ ...base, quant_type: 'fp4' })), QS],
    ['blocksize 48', false, (m) => m.set(QS, json({ ...base, blocksize: 48 })), QS],
    ['dtype int8', false, (m) => m.set(QS, json({ ...base, dtype: 'int8' })), QS],
    ['shape that disagrees with the packed bytes', false, (m) => m.set(QS, json({ ...base, shape: [1002] })), 'w'],
    ['negative shape', false, (m) => m.set(QS, json({ ...base, shape: [-1000] })), QS],
    ['huge shape', false, (m) => m.set(QS, json({ ...base, shape: [2 ** 40, 2 ** 40] })), QS],
    ['missing packed weight', false, (m) => m.delete('w'), 'w'],
    ['packed weight shorter than its shape says', false, (m) => m.set('w', { ...m.get('w')!, shape: [499, 1] }), 'w'],
    ['absmax count', false, (m) => m.set('w.absmax', { dtype: 'F32', shape: [15], data: new Uint8Array(60) }), 'w.absmax'],
    [
      'absmax as U8 without nested state',
      false,
      (m) => m.set('w.absmax', { dtype: 'U8', shape: [16], data: new Uint8Array(16) }),
      'w.absmax',
    ],
    ['NaN absmax', false, (m) => m.set('w.absmax', fromFloat32(new Float32Array(16).fill(Number.NaN), 'F32', [16])), 'w.absmax'],
    ['negative absmax', false, (m) => m.set('w.absmax', fromFloat32(new Float32Array(16).fill(-1), 'F32', [16])), 'w.absmax'],
    ['quant map of FP4', false, (m) => m.set('w.quant_map', fromFloat32(new Float32Array(16).fill(0.5), 'F32', [16])), 'w.quant_map'],
    ['missing quant map', false, (m) => m.delete('w.quant_map'), 'w.quant_map'],
    [
      'nested tensors without nested state',
      false,
      (m) => m.set('w.nested_absmax', fromFloat32(Float32Array.of(1), 'F32', [1])),
      'w.nested_absmax',
    ],
    ['missing nested absmax', true, (m) => m.delete('w.nested_absmax'), 'w.nested_absmax'],
    ['nested absmax count', true, (m) => m.set('w.nested_absmax', fromFloat32(Float32Array.of(1, 2), 'F32', [2])), 'w.nested_absmax'],
    ['absmax codes as F32', true, (m) => m.set('w.absmax', fromFloat32(new Float32Array(16), 'F32', [16])), 'w.absmax'],
    ['absmax codes count', true, (m) => m.set('w.absmax', { dtype: 'U8', shape: [15], data: new Uint8Array(15) }), 'w.absmax'],
    [
      'nested quant map is not the dynamic map',
      true,
      (m) => m.set('w.nested_quant_map', fromFloat32(new Float32Array(256), 'F32', [256])),
      'w.nested_quant_map',
    ],
    ['nested fields incomplete', true, (m) => m.set(QS, json({ ...base, nested_blocksize: 256, nested_dtype: 'float32' })), QS],
    [
      'nested offset not a number',
      true,
      (m) => m.set(QS, json({ ...base, nested_blocksize: 256, nested_dtype: 'float32', nested_offset: 'x' })),
      QS,
    ],
    [
      'nested dtype float16',
      true,
      (m) => m.set(QS, json({ ...base, nested_blocksize: 256, nested_dtype: 'float16', nested_offset: 1 })),
      QS,
    ],
    [
      'tensor bytes disagree with its shape',
      true,
      (m) => m.set('w.nested_absmax', { dtype: 'F32', shape: [1], data: new Uint8Array(5) }),
      'w.nested_absmax',
    ],
  ];
  it.each(cases)('%s', (_, dq, mutate, tensor) => {
    const m = bnbMap(dq);
    expect(() => fromMap(m)).not.toThrow();
    mutate(m);
    expectError(() => fromMap(m), 'nf4_invalid', tensor);
  });

  it('accepts a non-uint8 quant_storage holding the same bytes', () => {
    const m = bnbMap(false);
    const w = m.get('w')!;
    m.set('w', { dtype: 'BF16', shape: [w.data.length / 2, 1], data: w.data });
    expect(bits(dequantizeNf4(fromMap(m)))).toEqual(bits(dequantizeNf4(fromMap(bnbMap(false)))));
  });
});

describe('fromBnbTensors fuzz', () => {
  const names = ['w', 'w.absmax', 'w.quant_map', 'w.nested_absmax', 'w.nested_quant_map', QS];
  const dtypes = ['U8', 'F32', 'F16', 'BF16', 'I64', 'BOOL', 'X9'];
  const mutation = fc.oneof(
    fc.record({
      kind: fc.constant('shape' as const),
      name: fc.constantFrom(...names),
      shape: fc.array(fc.oneof(fc.integer({ min: -2, max: 3000 }), fc.constant(2 ** 53)), { maxLength: 3 }),
    }),
    fc.record({ kind: fc.constant('dtype' as const), name: fc.constantFrom(...names), dtype: fc.constantFrom(...dtypes) }),
    fc.record({
      kind: fc.constant('byte' as const),
      name: fc.constantFrom(...names),
      at: fc.nat(),
      value: fc.integer({ min: 0, max: 255 }),
    }),
    fc.record({ kind: fc.constant('truncate' as const), name: fc.constantFrom(...names), keep: fc.nat() }),
    fc.record({ kind: fc.constant('delete' as const), name: fc.constantFrom(...names) }),
    fc.record({
      kind: fc.constant('state' as const),
      key: fc.constantFrom('quant_type', 'blocksize', 'dtype', 'shape', 'nested_blocksize', 'nested_dtype', 'nested_offset'),
      value: fc.oneof(
        fc.integer(),
        fc.double(),
        fc.string(),
        fc.constant(null),
        fc.array(fc.integer({ min: -5, max: 1e9 }), { maxLength: 4 }),
      ),
    }),
  );
  it('only LoraEdgeErrors, and a state it accepts dequantizes within the bytes it has', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.array(mutation, { minLength: 1, maxLength: 4 }), (dq, muts) => {
        const m = bnbMap(dq, 777);
        for (const mu of muts) {
          if (mu.kind === 'state') {
            let s: Record<string, unknown> = {};
            try {
              s = JSON.parse(new TextDecoder().decode(m.get(QS)?.data)) as Record<string, unknown>;
            } catch {}
            s[mu.key] = mu.value;
            m.set(QS, json(s));
            continue;
          }
          const t = m.get(mu.name);
          if (!t) continue;
          if (mu.kind === 'shape') t.shape = mu.shape;
          else if (mu.kind === 'dtype') t.dtype = mu.dtype as Tensor['dtype'];
          else if (mu.kind === 'byte' && t.data.length) t.data[mu.at % t.data.length] = mu.value;
          else if (mu.kind === 'truncate') t.data = t.data.subarray(0, mu.keep % (t.data.length + 1));
          else if (mu.kind === 'delete') m.delete(mu.name);
        }
        let q: Nf4Quantized;
        try {
          q = fromMap(m);
        } catch (e) {
          if (!(e instanceof LoraEdgeError)) throw e;
          return;
        }
        const out = dequantizeNf4(q);
        expect(out.length).toBeLessThanOrEqual(2 * (m.get('w')?.data.length ?? 0));
      }),
      { numRuns: 400 },
    );
  });
});

describe('quant state JSON', () => {
  it('formats floats as Python repr does', () => {
    const cases: [number, string][] = [
      [0.0, '0.0'],
      [-0.0, '-0.0'],
      [1.0, '1.0'],
      [2.0, '2.0'],
      [-2.5, '-2.5'],
      [0.1, '0.1'],
      [0.0001, '0.0001'],
      [1e-5, '1e-05'],
      [0.00012345, '0.00012345'],
      [1.5e-5, '1.5e-05'],
      [123456789.0, '123456789.0'],
      [1000000000000000.0, '1000000000000000.0'],
      [1e16, '1e+16'],
      [1.2345e16, '1.2345e+16'],
      [9999999999999998.0, '9999999999999998.0'],
      [2.5834455490112305, '2.5834455490112305'],
      [20.165931701660156, '20.165931701660156'],
      [1e-300, '1e-300'],
      [5e-324, '5e-324'],
      [1.7976931348623157e308, '1.7976931348623157e+308'],
      [3.4028234663852886e38, '3.4028234663852886e+38'],
      [1e22, '1e+22'],
      [0.5, '0.5'],
      [100.0, '100.0'],
      [1234.5678, '1234.5678'],
      [-0.0001, '-0.0001'],
      [-1e-5, '-1e-05'],
      [-7.312714947140518e18, '-7.312714947140518e+18'],
      [6.045301006452064e-7, '6.045301006452064e-07'],
      [-4898619.5, '-4898619.5'],
      [5219249.0, '5219249.0'],
      [3.031859504925901e16, '3.031859504925901e+16'],
      [-5800904.0, '-5800904.0'],
      [-9.433050416100147e17, '-9.433050416100147e+17'],
      [-22038239232.0, '-22038239232.0'],
      [5.245601730763383e-9, '5.245601730763383e-09'],
      [0.3916657269001007, '0.3916657269001007'],
      [0.04430800676345825, '0.04430800676345825'],
      [1.8230687146569835e-6, '1.8230687146569835e-06'],
      [8.028549380867389e-9, '8.028549380867389e-09'],
      [-955355758592.0, '-955355758592.0'],
      [8.282494648199414e18, '8.282494648199414e+18'],
      [-0.0023759151808917522, '-0.0023759151808917522'],
      [938081322532864.0, '938081322532864.0'],
      [-0.09419184178113937, '-0.09419184178113937'],
      [5274020.0, '5274020.0'],
      [105.71915435791016, '105.71915435791016'],
    ];
    for (const [v, want] of cases) expect(pyFloatRepr(v)).toBe(want);
  });

  it('writes the key order and separators of json.dumps', () => {
    const q = quantizeNf4(new Float32Array(64).fill(2), { doubleQuant: true, shape: [8, 8] });
    const text = new TextDecoder().decode(encodeQuantState(quantStateJson(q)));
    expect(text).toBe(
      '{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [8, 8], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 2.0}',
    );
    expect(Array.from(dequantizeNf4(q))).toEqual(new Array(64).fill(2));
  });

  it('a constant tensor survives double quant (absmax - offset is all zero)', () => {
    const x = new Float32Array(64 * 300).fill(-0.75);
    const q = quantizeNf4(x, { doubleQuant: true });
    expect(Array.from(new Set(dequantizeNf4(q)))).toEqual([-0.75]);
    const f = readSafetensors(serializeSafetensors(toBnbTensors('w', q)));
    expect(Array.from(new Set(dequantizeNf4(fromBnbTensors(getter(f), 'w'))))).toEqual([-0.75]);
    // a full 256-block stores its absmax (0) as is; bitsandbytes stores the tail's clamped to 1e-38
    expect(bytesOfF32(asFloat32Array(f.tensor('w.nested_absmax').data))).toEqual(bytesOfF32(Float32Array.of(0, 1e-38)));
  });
});
