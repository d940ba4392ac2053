import { LoraEdgeError } from '../errors.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { parseSafetensorsHeader, type SafetensorsHeader, type TensorInfo } from './header.ts';

/** A whole safetensors file in memory; tensors are views into its bytes (no copies). */
export interface SafetensorsFile {
  header: SafetensorsHeader;
  bytes: Uint8Array;
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  tensor(name: string): Tensor;
}

export function readSafetensors(bytes: Uint8Array): SafetensorsFile {
  const header = parseSafetensorsHeader(bytes, bytes.byteLength);
  const info = (name: string): TensorInfo => {
    const t = header.byName.get(name);
    if (!t) throw new LoraEdgeError('safetensors_tensor_missing', 'no such tensor in the file', { tensor: name });
    return t;
  };
  return {
    header,
    bytes,
    names: () => header.tensors.map((t) => t.name),
    has: (name) => header.byName.has(name),
    info,
    tensor(name) {
      const t = info(name);
      return { dtype: t.dtype, shape: [...t.shape], data: bytes.subarray(t.begin, t.end) };
    },
  };
}
