import { LoraEdgeError } from '../errors.ts';
import type { ModelConfig } from '../model/config.ts';

/**
 * RoPE inverse frequencies (Hugging Face's rotate_half convention: channel i and i + d/2 share
 * frequency i) with the rope_scaling variants whose table does not depend on the sequence length.
 */
export function ropeInvFreq(config: ModelConfig): Float64Array {
  const d = config.headDim;
  const inv = Float64Array.from({ length: d / 2 }, (_, i) => config.ropeTheta ** ((-2 * i) / d));
  const s = config.raw.rope_scaling;
  if (!s) return inv;
  const type = String(s.rope_type ?? s.type);
  const factor = Number(s.factor ?? 1);
  if (type === 'default') return inv;
  if (type === 'linear') return inv.map((f) => f / factor);
  if (type === 'llama3') {
    // transformers' _compute_llama3_parameters: long wavelengths slowed by `factor`, short kept, smooth between.
    const low = Number(s.low_freq_factor ?? 1);
    const high = Number(s.high_freq_factor ?? 4);
    const orig = Number(s.original_max_position_embeddings ?? 8192);
    const lowWavelen = orig / low;
    const highWavelen = orig / high;
    return inv.map((f) => {
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < highWavelen) return f;
      if (wavelen > lowWavelen) return f / factor;
      const smooth = (orig / wavelen - low) / (high - low);
      return (1 - smooth) * (f / factor) + smooth * f;
    });
  }
  throw new LoraEdgeError('config_unsupported', `rope_scaling type "${type}" is not supported by the ONNX decoder`, {
    field: 'rope_scaling',
  });
}

/**
 * cos and sin of every position × frequency, in float64 then rounded once: [positions, d/2]
 * (the contrib ops' layout) or, with `full`, [positions, d] with the sin halves signed so that
 * rope(x) = x·cos + swap_halves(x)·sin (the standard-op graph's layout).
 */
export function ropeTables(config: ModelConfig, positions: number, full: boolean): { cos: Float32Array; sin: Float32Array } {
  const inv = ropeInvFreq(config);
  const half = inv.length;
  const width = full ? 2 * half : half;
  const cos = new Float32Array(positions * width);
  const sin = new Float32Array(positions * width);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * (inv[i] as number);
      const c = Math.cos(a);
      const s = Math.sin(a);
      cos[p * width + i] = c;
      if (full) {
        cos[p * width + half + i] = c;
        sin[p * width + i] = -s;
        sin[p * width + half + i] = s;
      } else {
        sin[p * width + i] = s;
      }
    }
  }
  return { cos, sin };
}
