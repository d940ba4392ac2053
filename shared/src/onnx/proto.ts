import { ProtoWriter } from './protobuf.ts';

/**
 * The part of onnx.proto (ModelProto and what it contains) that a decoder graph needs, with the
 * field numbers of onnx/onnx.proto3. Plain data in, protobuf bytes out.
 */

/** TensorProto.DataType. */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  BFLOAT16: 16,
} as const;
export type DataType = (typeof DataType)[keyof typeof DataType];

const ELEMENT_BYTES: Record<number, number> = { 1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2 };

export function elementBytes(t: DataType): number {
  const n = ELEMENT_BYTES[t];
  if (n === undefined) throw new RangeError(`data type ${t} has no fixed width`);
  return n;
}

/** A dimension: a size, or a symbolic name (`batch`, `past_sequence_length`). */
export type Dim = number | string;

export interface ValueInfo {
  name: string;
  elemType: DataType;
  shape: readonly Dim[];
  doc?: string;
}

/** Where an initializer's bytes live when they are not inside the model. */
export interface ExternalRef {
  location: string;
  offset: number;
  length: number;
}

export interface TensorProtoData {
  name: string;
  dataType: DataType;
  dims: readonly number[];
  /** Little-endian element bytes (raw_data). Exactly one of raw / external. */
  raw?: Uint8Array;
  external?: ExternalRef;
}

export type AttributeValue =
  | { type: 'float'; value: number }
  | { type: 'int'; value: number | bigint }
  | { type: 'string'; value: string }
  | { type: 'tensor'; value: TensorProtoData }
  | { type: 'floats'; value: readonly number[] }
  | { type: 'ints'; value: readonly (number | bigint)[] };

export interface NodeData {
  opType: string;
  domain?: string;
  name?: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attributes?: Readonly<Record<string, AttributeValue>>;
}

export interface GraphData {
  name: string;
  nodes: readonly NodeData[];
  initializers: readonly TensorProtoData[];
  inputs: readonly ValueInfo[];
  outputs: readonly ValueInfo[];
  doc?: string;
}

export interface ModelData {
  irVersion: number;
  opsets: readonly { domain: string; version: number }[];
  producerName?: string;
  producerVersion?: string;
  graph: GraphData;
  metadata?: Readonly<Record<string, string>>;
  doc?: string;
}

const ATTR_TYPE = { float: 1, int: 2, string: 3, tensor: 4, floats: 6, ints: 7 } as const;

function writeTensor(w: ProtoWriter, t: TensorProtoData): void {
  w.packedInts(1, t.dims);
  w.int(2, t.dataType);
  w.string(8, t.name);
  if (t.raw && t.external) throw new RangeError(`tensor ${t.name}: raw and external data both given`);
  if (t.raw) w.bytes(9, t.raw);
  if (t.external) {
    const e = t.external;
    const entry = (k: string, v: string) =>
      w.message(13, (m) => {
        m.string(1, k);
        m.string(2, v);
      });
    entry('location', e.location);
    entry('offset', String(e.offset));
    entry('length', String(e.length));
    w.int(14, 1); // DataLocation.EXTERNAL
  }
}

function writeAttribute(w: ProtoWriter, name: string, a: AttributeValue): void {
  w.string(1, name);
  w.int(20, ATTR_TYPE[a.type]);
  switch (a.type) {
    case 'float':
      w.float(2, a.value);
      break;
    case 'int':
      w.int(3, a.value);
      break;
    case 'string':
      w.string(4, a.value);
      break;
    case 'tensor':
      w.message(5, (m) => writeTensor(m, a.value));
      break;
    case 'floats':
      w.packedFloats(7, a.value);
      break;
    case 'ints':
      w.packedInts(8, a.value);
      break;
  }
}

function writeNode(w: ProtoWriter, n: NodeData): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  if (n.name) w.string(3, n.name);
  w.string(4, n.opType);
  for (const [k, a] of Object.entries(n.attributes ?? {})) w.message(5, (m) => writeAttribute(m, k, a));
  if (n.domain) w.string(7, n.domain);
}

function writeValueInfo(w: ProtoWriter, v: ValueInfo): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, v.elemType);
      tensor.message(2, (shape) => {
        for (const d of v.shape) {
          shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
        }
      });
    }),
  );
  if (v.doc) w.string(3, v.doc);
}

function writeGraph(w: ProtoWriter, g: GraphData): void {
  for (const n of g.nodes) w.message(1, (m) => writeNode(m, n));
  w.string(2, g.name);
  for (const t of g.initializers) w.message(5, (m) => writeTensor(m, t));
  if (g.doc) w.string(10, g.doc);
  for (const v of g.inputs) w.message(11, (m) => writeValueInfo(m, v));
  for (const v of g.outputs) w.message(12, (m) => writeValueInfo(m, v));
}

/** Serializes a ModelProto. Initializers with `raw` are copied in; `external` ones only referenced. */
export function encodeModel(model: ModelData): Uint8Array {
  const w = new ProtoWriter();
  w.int(1, model.irVersion);
  if (model.producerName) w.string(2, model.producerName);
  if (model.producerVersion) w.string(3, model.producerVersion);
  if (model.doc) w.string(6, model.doc);
  w.message(7, (g) => writeGraph(g, model.graph));
  for (const o of model.opsets) {
    w.message(8, (m) => {
      if (o.domain) m.string(1, o.domain);
      m.int(2, o.version);
    });
  }
  for (const [k, v] of Object.entries(model.metadata ?? {})) {
    w.message(14, (m) => {
      m.string(1, k);
      m.string(2, v);
    });
  }
  return w.finish();
}
