/**
 * Weights and LoRA stacks of the js backend: checked copies of the caller's arrays, decoded one
 * row at a time to float64 when a kernel needs them.
 */
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits } from '@lora-edge/shared';
import { exactly, f32, int, object, u8, u16 } from './checks.ts';
import type { LoraHandle, LoraInit, LoraLayout, VeraProjectionHandle, VeraTerm, WeightDType, WeightHandle } from './types.ts';

/** B by output row (CSR): row j's non-zeros are cols / vals [rowPtr[j], rowPtr[j + 1]). */
export interface JsSparse {
  rowPtr: Int32Array;
  cols: Uint8Array;
  vals: Float32Array;
}

/** VeRA's shared projections as stored (bf16-rounded when asked), widened to f32. */
export class JsVeraProjection implements VeraProjectionHandle {
  released = false;
  constructor(
    readonly rank: number,
    readonly maxIn: number,
    readonly maxOut: number,
    readonly bytes: number,
    /** vera_A [rank, maxIn]. */
    public A: Float32Array,
    /** vera_B [maxOut, rank]. */
    public B: Float32Array,
  ) {}
}

export class JsWeight implements WeightHandle {
  released = false;
  readonly in: number;
  constructor(
    readonly dtype: WeightDType,
    readonly out: number,
    inF: number,
    public data: Float32Array | Uint16Array | Uint8Array,
    readonly nf4?: { blocksize: number; absmax: Float32Array; quantMap: Float32Array },
  ) {
    this.in = inF;
  }
}

export class JsLora implements LoraHandle {
  released = false;
  readonly in: number;
  constructor(
    readonly rank: number,
    readonly out: number,
    inF: number,
    /** Factors as the backend stores them (bf16-rounded when asked), widened to f32. */
    public A: Float32Array,
    public B: Float32Array,
    public rowScale: Float32Array | undefined,
    readonly layout: LoraLayout = 'dense',
    /** Sparse layout: B by rows (then `B` is empty). */
    public sparse?: JsSparse,
    /** VeRA layout: the shared projection and this module's scale pairs (A and B empty). */
    public vera?: { projection: JsVeraProjection; terms: VeraTerm[] },
    /** Bytes per stored factor value (bf16: 2). */
    readonly factorBytes = 4,
  ) {
    this.in = inF;
  }

  get projection(): JsVeraProjection | undefined {
    return this.vera?.projection;
  }

  /** What this handle holds at the backend's storage width (bf16: 2 bytes a factor value). */
  get bytes(): number {
    const lambdas = this.vera?.terms.reduce((n, t) => n + (t.lambdaB.length + t.lambdaD.length) * 4, 0) ?? 0;
    const sparse = this.sparse
      ? this.sparse.rowPtr.byteLength + this.sparse.cols.byteLength + this.sparse.vals.length * this.factorBytes
      : 0;
    return (this.A.length + this.B.length) * this.factorBytes + sparse + (this.rowScale?.byteLength ?? 0) + lambdas;
  }
}

export function createJsWeight(initArg: unknown): JsWeight {
  const init = object(initArg, 'createWeight(init): init');
  const dtype = init.dtype;
  if (typeof dtype !== 'string') throw new TypeError('init.dtype must be a string');
  const out = int(init.out, 'init.out', 1);
  const inF = int(init.in, 'init.in', 1);
  const count = out * inF;
  switch (dtype as WeightDType) {
    case 'f32': {
      const d = f32(init.data, 'init.data (f32)');
      exactly(d, count, 'init.data');
      return new JsWeight('f32', out, inF, d.slice());
    }
    case 'bf16':
    case 'f16': {
      const d = u16(init.data, `init.data (${dtype} bits)`);
      exactly(d, count, 'init.data');
      return new JsWeight(dtype as WeightDType, out, inF, d.slice());
    }
    case 'nf4': {
      const d = u8(init.data, 'init.data (nf4 packed codes)');
      exactly(d, Math.ceil(count / 2), 'init.data');
      const nf4 = object(init.nf4, 'init.nf4');
      const blocksize = int(nf4.blocksize, 'init.nf4.blocksize', 1);
      const absmax = f32(nf4.absmax, 'init.nf4.absmax');
      exactly(absmax, Math.ceil(count / blocksize), 'init.nf4.absmax');
      const quantMap = f32(nf4.quantMap, 'init.nf4.quantMap');
      exactly(quantMap, 16, 'init.nf4.quantMap');
      return new JsWeight('nf4', out, inF, d.slice(), { blocksize, absmax: absmax.slice(), quantMap: quantMap.slice() });
    }
    default:
      throw new RangeError(`init.dtype must be 'f32', 'bf16', 'f16' or 'nf4', got '${dtype}'`);
  }
}

export function roundBf16(a: Float32Array): Float32Array {
  const r = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) r[i] = bf16BitsToF32(f32ToBf16Bits(a[i] as number));
  return r;
}

export function createJsLora(initArg: unknown): JsLora {
  const init = object(initArg, 'createLora(init): init') as Partial<LoraInit> & Record<string, unknown>;
  const rank = int(init.rank, 'init.rank', 1);
  const out = int(init.out, 'init.out', 1);
  const inF = int(init.in, 'init.in', 1);
  const dtype = init.dtype ?? 'f32';
  if (typeof dtype !== 'string') throw new TypeError('init.dtype must be a string');
  if (dtype !== 'f32' && dtype !== 'bf16') throw new RangeError(`init.dtype must be 'f32' or 'bf16', got '${dtype}'`);
  const A = f32(init.A, 'init.A');
  exactly(A, rank * inF, 'init.A');
  const B = f32(init.B, 'init.B');
  exactly(B, out * rank, 'init.B');
  let rowScale: Float32Array | undefined;
  if (init.rowScale !== undefined && init.rowScale !== null) {
    rowScale = f32(init.rowScale, 'init.rowScale');
    exactly(rowScale, out, 'init.rowScale');
    rowScale = rowScale.slice();
  }
  const layout = init.layout ?? 'auto';
  if (typeof layout !== 'string') throw new TypeError('init.layout must be a string');
  if (layout !== 'auto' && layout !== 'dense' && layout !== 'sparse')
    throw new RangeError(`init.layout must be 'auto', 'dense' or 'sparse', got '${layout}'`);
  if (layout === 'sparse' && rank > 256) throw new RangeError(`init.layout 'sparse' needs rank ≤ 256, got ${rank}`);
  const store = dtype === 'bf16' ? roundBf16 : (a: Float32Array) => a.slice();
  // Work here is per non-zero, so a LoRI-style B (≥ 80% exact zeros) always goes sparse on 'auto'.
  const sparse = layout === 'sparse' || (layout === 'auto' && rank <= 256 && zeros(B) * 5 >= B.length * 4);
  const width = dtype === 'bf16' ? 2 : 4;
  return sparse
    ? new JsLora(rank, out, inF, store(A), new Float32Array(0), rowScale, 'sparse', sparseRows(store(B), out, rank), undefined, width)
    : new JsLora(rank, out, inF, store(A), store(B), rowScale, 'dense', undefined, undefined, width);
}

function zeros(a: Float32Array): number {
  let z = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === 0) z++;
  return z;
}

/** B [out, rank] by rows, exact zeros (±0) dropped. */
export function sparseRows(B: Float32Array, out: number, rank: number): JsSparse {
  const nnz = B.length - zeros(B);
  const rowPtr = new Int32Array(out + 1);
  const cols = new Uint8Array(nnz);
  const vals = new Float32Array(nnz);
  let e = 0;
  for (let j = 0; j < out; j++) {
    for (let r = 0; r < rank; r++) {
      const v = B[j * rank + r] as number;
      if (v === 0) continue;
      cols[e] = r;
      vals[e++] = v;
    }
    rowPtr[j + 1] = e;
  }
  return { rowPtr, cols, vals };
}

export function liveWeight(h: unknown, what: string): JsWeight {
  if (!(h instanceof JsWeight)) throw new TypeError(`${what} must be a weight handle of the js backend`);
  if (h.released) throw new Error(`${what} has been released`);
  return h;
}

export function liveLora(h: unknown, what: string): JsLora {
  if (!(h instanceof JsLora)) throw new TypeError(`${what} must be a LoRA handle of the js backend`);
  if (h.released) throw new Error(`${what} has been released`);
  return h;
}

/** Row r of the weight as exact float64 values (NF4: quantMap[code]·absmax rounded to f32, as bitsandbytes computes it). */
export function decodeRow(w: JsWeight, r: number, row: Float64Array): void {
  const inF = w.in;
  const base = r * inF;
  const d = w.data;
  switch (w.dtype) {
    case 'f32':
      for (let k = 0; k < inF; k++) row[k] = d[base + k] as number;
      return;
    case 'bf16':
      for (let k = 0; k < inF; k++) row[k] = bf16BitsToF32(d[base + k] as number);
      return;
    case 'f16':
      for (let k = 0; k < inF; k++) row[k] = f16BitsToF32(d[base + k] as number);
      return;
    case 'nf4': {
      const { blocksize, absmax, quantMap } = w.nf4!;
      for (let k = 0; k < inF; k++) {
        const f = base + k;
        const byte = d[f >> 1] as number;
        const code = f & 1 ? byte & 15 : byte >> 4;
        row[k] = Math.fround((quantMap[code] as number) * (absmax[Math.floor(f / blocksize)] as number));
      }
      return;
    }
  }
}
