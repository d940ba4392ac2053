import { fromBnbTensors, nf4BlockAbsmax, QUANT_STATE_SUFFIX } from '@lora-edge/shared';
import type { WeightInit } from '../backend/types.ts';
import type { TensorSource, WeightDecoder } from './model.ts';

/**
 * Reads an NF4 weight in bitsandbytes' layout (`<name>`, `<name>.absmax`, ... and the quant
 * state) as the backend's nf4 weight: codes stay packed, double quantization is resolved
 * to one float32 scale per block at load.
 */
export const nf4Decoder: WeightDecoder = (source: TensorSource, name: string): WeightInit | undefined => {
  if (!source.get(`${name}.${QUANT_STATE_SUFFIX}`)) return undefined;
  const q = fromBnbTensors((n) => source.get(n), name);
  if (q.shape.length !== 2) return undefined;
  const [out, inF] = q.shape as [number, number];
  return { dtype: 'nf4', out, in: inF, data: q.packed, nf4: { blocksize: q.blocksize, absmax: nf4BlockAbsmax(q), quantMap: q.quantMap } };
};
