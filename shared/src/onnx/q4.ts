/**
 * 4-bit blockwise weights in the layout of onnxruntime's com.microsoft.MatMulNBits: for each
 * output row n and each block of `blockSize` inputs, codes q ∈ [0, 15] with w ≈ (q − zp)·scale.
 * Codes: [N, blocks, blockSize/2] bytes, element k in the low nibble when k is even; scales:
 * [N·blocks] floats; zero points packed two per byte in the same nibble order, [N·⌈blocks/2⌉].
 * Rounding is to nearest with the block's range stretched to include 0 (so 0 is exact).
 */
export interface Q4Weight {
  /** Output features (rows of the Hugging Face weight). */
  n: number;
  /** Input features. */
  k: number;
  blockSize: number;
  codes: Uint8Array;
  scales: Float32Array;
  zeroPoints: Uint8Array;
}

export function q4Blocks(k: number, blockSize: number): number {
  return Math.ceil(k / blockSize);
}

/** Bytes of the three tensors for an [n, k] weight. */
export function q4Bytes(n: number, k: number, blockSize: number): number {
  const b = q4Blocks(k, blockSize);
  return n * b * (blockSize / 2) + n * b * 4 + n * Math.ceil(b / 2);
}

/** Quantizes W [n, k] (row-major, the Hugging Face layout). */
export function quantizeQ4(W: Float32Array, n: number, k: number, blockSize = 32): Q4Weight {
  if (blockSize < 16 || blockSize & (blockSize - 1)) throw new RangeError(`block size ${blockSize} must be a power of two ≥ 16`);
  if (W.length !== n * k) throw new RangeError(`weight has ${W.length} values, expected ${n}×${k}`);
  const blocks = q4Blocks(k, blockSize);
  const blob = blockSize / 2;
  const codes = new Uint8Array(n * blocks * blob);
  const scales = new Float32Array(n * blocks);
  const zpStride = Math.ceil(blocks / 2);
  const zeroPoints = new Uint8Array(n * zpStride);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < blocks; b++) {
      const start = r * k + b * blockSize;
      const end = r * k + Math.min(k, (b + 1) * blockSize);
      let lo = 0;
      let hi = 0;
      for (let i = start; i < end; i++) {
        const v = W[i] as number;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const scale = Math.fround((hi - lo) / 15);
      const zp = scale === 0 ? 8 : Math.min(15, Math.max(0, Math.round(-lo / scale)));
      const inv = scale === 0 ? 0 : 1 / scale;
      scales[r * blocks + b] = scale;
      const zi = r * zpStride + (b >> 1);
      zeroPoints[zi] = (zeroPoints[zi] as number) | (zp << ((b & 1) * 4));
      const base = (r * blocks + b) * blob;
      for (let i = start; i < end; i++) {
        const q = Math.min(15, Math.max(0, Math.round((W[i] as number) * inv) + zp));
        const j = i - start;
        const ci = base + (j >> 1);
        codes[ci] = (codes[ci] as number) | (q << ((j & 1) * 4));
      }
    }
  }
  return { n, k, blockSize, codes, scales, zeroPoints };
}

/** The float weight the 4-bit codes stand for (what MatMulNBits multiplies by), [n, k]. */
export function dequantizeQ4(q: Q4Weight): Float32Array {
  const { n, k, blockSize } = q;
  const blocks = q4Blocks(k, blockSize);
  const zpStride = Math.ceil(blocks / 2);
  const out = new Float32Array(n * k);
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < k; c++) {
      const b = Math.floor(c / blockSize);
      const j = c - b * blockSize;
      const code = ((q.codes[(r * blocks + b) * (blockSize / 2) + (j >> 1)] as number) >> ((j & 1) * 4)) & 15;
      const zp = ((q.zeroPoints[r * zpStride + (b >> 1)] as number) >> ((b & 1) * 4)) & 15;
      out[r * k + c] = Math.fround((code - zp) * (q.scales[r * blocks + b] as number));
    }
  }
  return out;
}
