import { LoraEdgeError } from '../errors.ts';
import type { Feeds } from './feeds.ts';
import { DataType, type ModelData } from './proto.ts';

const TYPES = { float32: DataType.FLOAT, int64: DataType.INT64, uint8: DataType.UINT8 } as const;

/**
 * The same model with some inputs turned into constant initializers holding `feeds`: what
 * onnxruntime's own LoRA adapters give (parameters resident in the session, nothing copied per
 * run), for builds whose API cannot load them (onnxruntime-web). One session per baked setting.
 */
export function bakeInputs(model: ModelData, feeds: Feeds): ModelData {
  const names = new Set(Object.keys(feeds));
  for (const n of names) {
    if (!model.graph.inputs.some((i) => i.name === n)) throw new LoraEdgeError('invalid_argument', `"${n}" is not an input of this graph`);
  }
  const initializers = [...model.graph.initializers];
  for (const [name, t] of Object.entries(feeds)) {
    const raw = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    initializers.push({ name, dataType: TYPES[t.type], dims: t.dims, raw });
  }
  return { ...model, graph: { ...model.graph, inputs: model.graph.inputs.filter((i) => !names.has(i.name)), initializers } };
}
