import {
  type AttributeValue,
  DataType,
  type Dim,
  type GraphData,
  type ModelData,
  type NodeData,
  type TensorProtoData,
  type ValueInfo,
} from './proto.ts';

/** Attribute constructors, so node specs read like the ONNX operator docs. */
export const attr = {
  int: (value: number | bigint): AttributeValue => ({ type: 'int', value }),
  ints: (value: readonly (number | bigint)[]): AttributeValue => ({ type: 'ints', value }),
  float: (value: number): AttributeValue => ({ type: 'float', value }),
  floats: (value: readonly number[]): AttributeValue => ({ type: 'floats', value }),
  string: (value: string): AttributeValue => ({ type: 'string', value }),
};

export const MS_DOMAIN = 'com.microsoft';

export interface OpOptions {
  domain?: string;
  /** Output names; default: one fresh name. */
  outputs?: readonly string[];
  /** Number of fresh outputs (ignored when `outputs` is given). */
  numOutputs?: number;
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * Collects nodes, initializers and graph inputs/outputs with unique value names. Constants are
 * deduplicated by value, so helpers can ask for `[0]` or `[-1]` as often as they like.
 */
export class GraphBuilder {
  readonly nodes: NodeData[] = [];
  readonly initializers: TensorProtoData[] = [];
  readonly inputs: ValueInfo[] = [];
  readonly outputs: ValueInfo[] = [];
  private readonly names = new Set<string>();
  /** Fresh names handed out but not yet defined. */
  private readonly reserved = new Set<string>();
  private readonly constants = new Map<string, string>();
  private counter = 0;

  constructor(readonly name: string) {}

  private claim(name: string): string {
    if (this.names.has(name)) throw new RangeError(`graph value "${name}" is defined twice`);
    this.names.add(name);
    this.reserved.delete(name);
    return name;
  }

  /** A new unique value name, to be defined by the caller (as a node output or an initializer). */
  fresh(hint: string): string {
    let n: string;
    do n = `${hint}_${this.counter++}`;
    while (this.names.has(n) || this.reserved.has(n));
    this.reserved.add(n);
    return n;
  }

  input(name: string, elemType: DataType, shape: readonly Dim[], doc?: string): string {
    this.inputs.push(doc ? { name: this.claim(name), elemType, shape, doc } : { name: this.claim(name), elemType, shape });
    return name;
  }

  /** Declares `value` as a graph output named `name` (an Identity node when the names differ). */
  output(name: string, value: string, elemType: DataType, shape: readonly Dim[]): void {
    if (value !== name) this.op('Identity', [value], {}, { outputs: [name] });
    this.outputs.push({ name, elemType, shape });
  }

  /**
   * A weight. With `overridable`, it is also a graph input whose default is this value: a run
   * may feed another tensor under the same name (how merged weights reach one shared graph).
   */
  initializer(t: TensorProtoData, opts: { overridable?: boolean; shape?: readonly Dim[] } = {}): string {
    this.claim(t.name);
    this.initializers.push(t);
    if (opts.overridable) this.inputs.push({ name: t.name, elemType: t.dataType, shape: opts.shape ?? t.dims });
    return t.name;
  }

  private constant(dataType: DataType, dims: readonly number[], data: ArrayBufferView, key: string): string {
    const k = `${dataType}:${dims.join('x')}:${key}`;
    const hit = this.constants.get(k);
    if (hit) return hit;
    const name = this.claim(this.fresh('const'));
    this.initializers.push({ name, dataType, dims, raw: bytesOf(data).slice() });
    this.constants.set(k, name);
    return name;
  }

  /** An int64 constant: a scalar for a number, a 1-D tensor for an array. */
  i64(v: number | readonly number[]): string {
    const arr = typeof v === 'number' ? [v] : v;
    return this.constant(DataType.INT64, typeof v === 'number' ? [] : [arr.length], BigInt64Array.from(arr, BigInt), arr.join(','));
  }

  /** A float32 constant: a scalar for a number, else the given dims. */
  f32(v: number | Float32Array, dims: readonly number[] = []): string {
    const arr = typeof v === 'number' ? Float32Array.of(v) : v;
    return this.constant(DataType.FLOAT, dims, arr, Array.from(arr).join(','));
  }

  /** Adds a node; returns its output names (one name when it has one output). */
  op(opType: string, inputs: readonly string[], attributes: Readonly<Record<string, AttributeValue>> = {}, opts: OpOptions = {}): string[] {
    const outputs = opts.outputs
      ? opts.outputs.map((o) => (o ? this.claim(o) : o))
      : Array.from({ length: opts.numOutputs ?? 1 }, () => this.claim(this.fresh(opType.toLowerCase())));
    const node: NodeData = { opType, inputs, outputs, attributes };
    if (opts.domain) node.domain = opts.domain;
    this.nodes.push(node);
    return [...outputs];
  }

  /** A single-output node. */
  op1(opType: string, inputs: readonly string[], attributes: Readonly<Record<string, AttributeValue>> = {}, domain?: string): string {
    return this.op(opType, inputs, attributes, domain ? { domain } : {})[0] as string;
  }

  graph(doc?: string): GraphData {
    const g: GraphData = {
      name: this.name,
      nodes: this.nodes,
      initializers: this.initializers,
      inputs: this.inputs,
      outputs: this.outputs,
    };
    return doc ? { ...g, doc } : g;
  }

  model(opsets: ModelData['opsets'], opts: { irVersion?: number; metadata?: Record<string, string>; doc?: string } = {}): ModelData {
    const m: ModelData = {
      irVersion: opts.irVersion ?? 8,
      opsets,
      producerName: 'lora-edge',
      producerVersion: '0.1.0',
      graph: this.graph(opts.doc),
    };
    if (opts.metadata) m.metadata = opts.metadata;
    return m;
  }
}
