/**
 * The `quant_state.bitsandbytes__nf4` tensor: UTF-8 bytes of the JSON bitsandbytes'
 * `QuantState.as_dict(packed=True)` writes (the non-tensor fields, in its key order), which
 * transformers reads back with `QuantState.from_dict`.
 */
import { LoraEdgeError } from '../errors.ts';
import { PyFloat, type PyJson, pyJsonDumps } from './pyjson.ts';
import { isValidBlocksize, type Nf4Quantized, type Nf4SourceDType, shapeNumel } from './types.ts';

export const QUANT_STATE_SUFFIX = 'quant_state.bitsandbytes__nf4';

/** torch's dtype names as bitsandbytes writes them (`str(dtype).strip("torch.")`). */
const TORCH_NAMES: Record<Nf4SourceDType, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };

export interface QuantStateJson {
  quant_type: 'nf4';
  blocksize: number;
  dtype: Nf4SourceDType;
  shape: number[];
  nested?: { blocksize: number; dtype: 'float32'; offset: number };
}

export function quantStateJson(q: Nf4Quantized): QuantStateJson {
  const base: QuantStateJson = { quant_type: 'nf4', blocksize: q.blocksize, dtype: q.dtype, shape: [...q.shape] };
  if (q.doubleQuant) base.nested = { blocksize: q.nestedBlocksize, dtype: 'float32', offset: Math.fround(q.offset) };
  return base;
}

export function encodeQuantState(s: QuantStateJson): Uint8Array {
  const obj: Record<string, PyJson> = { quant_type: s.quant_type, blocksize: s.blocksize, dtype: TORCH_NAMES[s.dtype], shape: s.shape };
  if (s.nested) {
    obj.nested_blocksize = s.nested.blocksize;
    obj.nested_dtype = s.nested.dtype;
    // offset.item() is a Python float even when it is integral: "2.0", not "2".
    obj.nested_offset = new PyFloat(s.nested.offset);
  }
  return new TextEncoder().encode(pyJsonDumps(obj));
}

/** A quant state is a few hundred bytes; refuse to parse anything absurd. */
const MAX_QUANT_STATE_BYTES = 64 * 1024;

/** Parses and validates the JSON; errors name `tensor` and the offending field. */
export function parseQuantState(bytes: Uint8Array, tensor: string): QuantStateJson {
  const fail = (msg: string, field?: string): LoraEdgeError =>
    new LoraEdgeError('nf4_invalid', msg, field ? { tensor, field } : { tensor });
  if (bytes.byteLength > MAX_QUANT_STATE_BYTES) throw fail(`${bytes.byteLength} bytes is too large for a quant state`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes));
  } catch (e) {
    throw fail(`not UTF-8 JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw fail('is not a JSON object');
  const o = json as Record<string, unknown>;
  if (o.quant_type !== 'nf4') throw fail(`quant_type ${JSON.stringify(o.quant_type)} is not "nf4"`, 'quant_type');
  if (!isValidBlocksize(o.blocksize)) throw fail(`${JSON.stringify(o.blocksize)} is not a power of two between 32 and 4096`, 'blocksize');
  const dtype = (Object.keys(TORCH_NAMES) as Nf4SourceDType[]).find((d) => TORCH_NAMES[d] === o.dtype);
  if (!dtype) throw fail(`${JSON.stringify(o.dtype)} is not float32, float16 or bfloat16`, 'dtype');
  const n = shapeNumel(o.shape);
  if (n === undefined || n === 0) throw fail(`${JSON.stringify(o.shape)} is not a non-empty tensor shape`, 'shape');
  const state: QuantStateJson = { quant_type: 'nf4', blocksize: o.blocksize, dtype, shape: [...(o.shape as number[])] };

  const nestedKeys = ['nested_blocksize', 'nested_dtype', 'nested_offset'].filter((k) => k in o);
  if (nestedKeys.length === 0) return state;
  if (nestedKeys.length < 3) throw fail(`has ${nestedKeys.join(', ')} but double quantization needs all three nested fields`);
  if (!isValidBlocksize(o.nested_blocksize)) {
    throw fail(`${JSON.stringify(o.nested_blocksize)} is not a power of two between 32 and 4096`, 'nested_blocksize');
  }
  if (o.nested_dtype !== 'float32') throw fail(`${JSON.stringify(o.nested_dtype)} is not "float32"`, 'nested_dtype');
  if (typeof o.nested_offset !== 'number' || !Number.isFinite(Math.fround(o.nested_offset))) {
    throw fail(`${JSON.stringify(o.nested_offset)} is not a finite float32`, 'nested_offset');
  }
  // bitsandbytes reads it back as torch.tensor(float(x)): a float32.
  state.nested = { blocksize: o.nested_blocksize, dtype: 'float32', offset: Math.fround(o.nested_offset) };
  return state;
}
