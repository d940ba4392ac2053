/**
 * bitsandbytes' state-dict layout for an NF4 weight, as transformers saves and loads it:
 *   <prefix>                                  U8 [ceil(n/2), 1]  packed codes
 *   <prefix>.absmax                           F32 [blocks], or U8 [blocks] with double quant
 *   <prefix>.quant_map                        F32 [16]
 *   <prefix>.nested_absmax                    F32 [ceil(blocks/256)]   (double quant)
 *   <prefix>.nested_quant_map                 F32 [256]                (double quant)
 *   <prefix>.quant_state.bitsandbytes__nf4    U8 JSON bytes
 */
import { LoraEdgeError } from '../errors.ts';
import type { NamedTensor } from '../safetensors/write.ts';
import { type DType, dtypeSize, isDType } from '../tensor/dtype.ts';
import { asFloat32Array, bytesOf, type Tensor } from '../tensor/tensor.ts';
import { encodeQuantState, parseQuantState, QUANT_STATE_SUFFIX, quantStateJson } from './quant-state.ts';
import { dynamicMapSigned, NF4_CODE } from './tables.ts';
import { blockCount, checkNf4, type Nf4Quantized, shapeNumel } from './types.ts';

/** The tensors bitsandbytes would save for `q` under `prefix` (e.g. "model.layers.0.mlp.up_proj.weight"), sorted by name. */
export function toBnbTensors(prefix: string, q: Nf4Quantized): NamedTensor[] {
  checkNf4(q);
  const out: NamedTensor[] = [
    { name: prefix, dtype: 'U8', shape: [q.packed.length, 1], data: q.packed },
    { name: `${prefix}.quant_map`, dtype: 'F32', shape: [16], data: bytesOf(q.quantMap) },
  ];
  if (q.doubleQuant) {
    out.push(
      { name: `${prefix}.absmax`, dtype: 'U8', shape: [q.absmaxCodes.length], data: q.absmaxCodes },
      { name: `${prefix}.nested_absmax`, dtype: 'F32', shape: [q.nestedAbsmax.length], data: bytesOf(q.nestedAbsmax) },
      { name: `${prefix}.nested_quant_map`, dtype: 'F32', shape: [256], data: bytesOf(q.nestedQuantMap) },
    );
  } else {
    out.push({ name: `${prefix}.absmax`, dtype: 'F32', shape: [q.absmax.length], data: bytesOf(q.absmax) });
  }
  const state = encodeQuantState(quantStateJson(q));
  out.push({ name: `${prefix}.${QUANT_STATE_SUFFIX}`, dtype: 'U8', shape: [state.length], data: state });
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Reads an NF4 weight back from bitsandbytes' tensors. `get` returns a tensor by full name (or
 * undefined). Every inconsistency is a LoraEdgeError (`nf4_invalid`) naming the tensor. The
 * arrays of the result view the tensors' bytes where alignment allows (no copies).
 */
export function fromBnbTensors(get: (name: string) => Tensor | undefined, prefix: string): Nf4Quantized {
  const stateName = `${prefix}.${QUANT_STATE_SUFFIX}`;
  const stateTensor = get(stateName);
  if (!stateTensor) {
    if (get(`${prefix}.quant_state.bitsandbytes__fp4`)) {
      throw invalid(`${prefix}.quant_state.bitsandbytes__fp4`, 'FP4 weights are not supported; only NF4');
    }
    throw invalid(stateName, 'missing: not a bitsandbytes 4-bit weight');
  }
  checkTensor(stateName, stateTensor, ['U8']);
  const state = parseQuantState(stateTensor.data, stateName);
  const n = shapeNumel(state.shape) as number;
  const blocks = blockCount(n, state.blocksize);

  const packedT = need(get, prefix);
  // quant_storage other than uint8 only reinterprets the same bytes.
  checkTensor(prefix, packedT);
  if (packedT.data.byteLength !== Math.ceil(n / 2)) {
    throw invalid(prefix, `holds ${packedT.data.byteLength} bytes; shape [${state.shape}] needs ${Math.ceil(n / 2)} (two codes per byte)`);
  }
  const quantMap = floats(get, `${prefix}.quant_map`, 16);
  expectClose(`${prefix}.quant_map`, quantMap, NF4_CODE, 'the NF4 code');

  const absmaxName = `${prefix}.absmax`;
  const common = { shape: state.shape, dtype: state.dtype, blocksize: state.blocksize, packed: packedT.data, quantMap };
  if (!state.nested) {
    for (const extra of ['nested_absmax', 'nested_quant_map']) {
      if (get(`${prefix}.${extra}`))
        throw invalid(`${prefix}.${extra}`, 'present, but the quant state has no nested (double-quant) fields');
    }
    const absmax = floats(get, absmaxName, blocks);
    expectScales(absmaxName, absmax);
    return { ...common, doubleQuant: false, absmax };
  }

  const codesT = need(get, absmaxName);
  checkTensor(absmaxName, codesT, ['U8']);
  if (codesT.data.length !== blocks) throw invalid(absmaxName, `has ${codesT.data.length} codes; ${blocks} blocks need one each`);
  const nestedAbsmaxName = `${prefix}.nested_absmax`;
  const nestedAbsmax = floats(get, nestedAbsmaxName, blockCount(blocks, state.nested.blocksize));
  expectScales(nestedAbsmaxName, nestedAbsmax);
  const mapName = `${prefix}.nested_quant_map`;
  const nestedQuantMap = floats(get, mapName, 256);
  expectClose(mapName, nestedQuantMap, dynamicMapSigned(), "bitsandbytes' signed dynamic map");
  return {
    ...common,
    doubleQuant: true,
    absmaxCodes: codesT.data,
    nestedAbsmax,
    nestedQuantMap,
    nestedBlocksize: state.nested.blocksize,
    offset: state.nested.offset,
  };
}

function invalid(tensor: string, msg: string): LoraEdgeError {
  return new LoraEdgeError('nf4_invalid', msg, { tensor });
}

function need(get: (name: string) => Tensor | undefined, name: string): Tensor {
  const t = get(name);
  if (!t) throw invalid(name, 'missing');
  return t;
}

/** The tensor is well-formed (dtype known, shape of non-negative integers, bytes matching) and of an allowed dtype. */
function checkTensor(name: string, t: Tensor, dtypes?: DType[]): void {
  if (typeof t.dtype !== 'string' || !isDType(t.dtype)) throw invalid(name, `unknown dtype ${JSON.stringify(t.dtype)}`);
  if (dtypes && !dtypes.includes(t.dtype)) throw invalid(name, `dtype ${t.dtype}, expected ${dtypes.join(' or ')}`);
  const n = shapeNumel(t.shape);
  if (n === undefined) throw invalid(name, `shape ${JSON.stringify(t.shape)} is not a list of non-negative integers`);
  if (!(t.data instanceof Uint8Array) || t.data.byteLength !== n * dtypeSize(t.dtype)) {
    throw invalid(name, `holds ${t.data?.byteLength} bytes, shape [${t.shape}] of ${t.dtype} needs ${n * dtypeSize(t.dtype)}`);
  }
}

/** A required F32 tensor of exactly `count` finite values. */
function floats(get: (name: string) => Tensor | undefined, name: string, count: number): Float32Array {
  const t = need(get, name);
  checkTensor(name, t, ['F32']);
  if (t.data.byteLength !== count * 4) throw invalid(name, `has ${t.data.byteLength / 4} values, expected ${count}`);
  const v = asFloat32Array(t.data);
  for (let i = 0; i < v.length; i++) {
    const x = v[i] as number;
    if (x - x !== 0) throw invalid(name, `value ${i} is ${x}`);
  }
  return v;
}

/** absmax values are magnitudes: quantization never writes a negative one. */
function expectScales(name: string, v: Float32Array): void {
  const i = v.findIndex((x) => x < 0);
  if (i >= 0) throw invalid(name, `value ${i} is ${v[i]}; an absmax is never negative`);
}

/** Within 1e-6 of the table we expect: bitsandbytes' dynamic map differs in the last bit between CPUs. */
function expectClose(name: string, got: Float32Array, want: Float32Array, what: string): void {
  const i = got.findIndex((x, j) => !(Math.abs(x - (want[j] as number)) <= 1e-6));
  if (i >= 0) throw invalid(name, `value ${i} is ${got[i]}, ${what} has ${want[i]}: not ${what}`);
}
