import { LoraEdgeError } from '../errors.ts';
import { type DType, isDType } from '../tensor/dtype.ts';
import { type Tensor, tensorByteLength } from '../tensor/tensor.ts';

export interface TensorSpec {
  name: string;
  dtype: DType;
  shape: number[];
}

export interface WriteOptions {
  metadata?: Record<string, string>;
  /**
   * Order of the tensor keys in the JSON header; data is always laid out in the order given.
   * Defaults to the data order (which is what the reference writer produces for name-sorted input).
   */
  headerOrder?: readonly string[];
}

export interface PlannedFile {
  /** The 8-byte length plus the padded JSON header. */
  head: Uint8Array;
  /** Absolute [begin, end) of each tensor, in data order. */
  ranges: { spec: TensorSpec; begin: number; end: number }[];
  totalSize: number;
}

const encoder = new TextEncoder();

/** Computes the header and layout for tensors laid out in the given order. */
export function planSafetensors(specs: readonly TensorSpec[], opts: WriteOptions = {}): PlannedFile {
  const seen = new Set<string>();
  const entries = new Map<string, { dtype: DType; shape: number[]; data_offsets: [number, number] }>();
  let offset = 0;
  for (const spec of specs) {
    if (spec.name === '__metadata__' || seen.has(spec.name)) {
      throw new LoraEdgeError('invalid_argument', 'tensor name is reserved or repeated', { tensor: spec.name });
    }
    if (!isDType(spec.dtype)) throw new LoraEdgeError('safetensors_unknown_dtype', `unknown dtype "${spec.dtype}"`, { tensor: spec.name });
    seen.add(spec.name);
    const size = tensorByteLength(spec.dtype, spec.shape);
    entries.set(spec.name, { dtype: spec.dtype, shape: spec.shape, data_offsets: [offset, offset + size] });
    offset += size;
  }
  const order = opts.headerOrder ?? specs.map((s) => s.name);
  if (order.length !== specs.length || !order.every((n) => entries.has(n))) {
    throw new LoraEdgeError('invalid_argument', 'headerOrder must name every tensor exactly once');
  }
  // Build the JSON by hand to control key order: metadata first, then tensors; fields sorted.
  const parts: string[] = [];
  if (opts.metadata) parts.push(`"__metadata__":${JSON.stringify(opts.metadata)}`);
  for (const name of order) {
    const e = entries.get(name) as { dtype: DType; shape: number[]; data_offsets: [number, number] };
    parts.push(
      `${JSON.stringify(name)}:{"data_offsets":[${e.data_offsets[0]},${e.data_offsets[1]}],"dtype":"${e.dtype}","shape":[${e.shape.join(',')}]}`,
    );
  }
  const json = encoder.encode(`{${parts.join(',')}}`);
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const head = new Uint8Array(8 + padded).fill(0x20, 8 + json.byteLength);
  new DataView(head.buffer).setBigUint64(0, BigInt(padded), true);
  head.set(json, 8);
  const dataStart = head.byteLength;
  const ranges = specs.map((spec) => {
    const [b, e] = (entries.get(spec.name) as { data_offsets: [number, number] }).data_offsets;
    return { spec, begin: dataStart + b, end: dataStart + e };
  });
  return { head, ranges, totalSize: dataStart + offset };
}

export interface NamedTensor extends Tensor {
  name: string;
}

/** Serializes tensors held in memory into one buffer. */
export function serializeSafetensors(tensors: readonly NamedTensor[], opts: WriteOptions = {}): Uint8Array {
  const plan = planSafetensors(tensors, opts);
  const out = new Uint8Array(plan.totalSize);
  out.set(plan.head, 0);
  tensors.forEach((t, i) => {
    const r = plan.ranges[i] as { begin: number; end: number };
    if (t.data.byteLength !== r.end - r.begin) {
      throw new LoraEdgeError('invalid_argument', `holds ${t.data.byteLength} bytes, shape needs ${r.end - r.begin}`, { tensor: t.name });
    }
    out.set(t.data, r.begin);
  });
  return out;
}

/**
 * Streams a file too large to hold at once: the header first, then each tensor's bytes as
 * `produce` yields them (tensor by tensor, in order). Every tensor's byte count is checked,
 * so a short producer fails loudly instead of writing a corrupt file.
 */
export async function* streamSafetensors(
  specs: readonly TensorSpec[],
  produce: (spec: TensorSpec, index: number) => AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: WriteOptions = {},
): AsyncGenerator<Uint8Array> {
  const plan = planSafetensors(specs, opts);
  yield plan.head;
  for (const [i, r] of plan.ranges.entries()) {
    let written = 0;
    const want = r.end - r.begin;
    for await (const chunk of produce(r.spec, i)) {
      written += chunk.byteLength;
      if (written > want) break;
      yield chunk;
    }
    if (written !== want) {
      throw new LoraEdgeError('invalid_argument', `producer gave ${written} bytes, shape needs ${want}`, { tensor: r.spec.name });
    }
  }
}
