import { LoraEdgeError } from '../errors.ts';
import type { SafetensorsFile } from '../safetensors/read.ts';
import { isFloatDType } from '../tensor/dtype.ts';
import { bytesOf, firstNonFinite, type Tensor, toFloat32 } from '../tensor/tensor.ts';

/** A float tensor of the file as f32, refusing other dtypes, wrong ranks and NaN/Inf by name. */
export function floatFactor(st: SafetensorsFile, key: string, rank: number, file: string): { values: Float32Array; shape: number[] } {
  if (!st.has(key)) throw new LoraEdgeError('adapter_key_invalid', 'missing', { file, tensor: key });
  const t = st.tensor(key);
  if (!isFloatDType(t.dtype))
    throw new LoraEdgeError('adapter_key_invalid', `dtype ${t.dtype} is not a floating type`, { file, tensor: key });
  if (t.shape.length !== rank)
    throw new LoraEdgeError('adapter_shape_mismatch', `expected ${rank} dimensions, got [${t.shape}]`, { file, tensor: key });
  const values = toFloat32(t);
  if (firstNonFinite(values) >= 0) throw new LoraEdgeError('non_finite_value', 'holds NaN or Inf', { file, tensor: key });
  return { values, shape: t.shape };
}

export function f32Tensor(values: Float32Array, shape: number[]): Tensor {
  return { dtype: 'F32', shape, data: bytesOf(values) };
}
