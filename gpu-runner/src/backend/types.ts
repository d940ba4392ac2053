/**
 * The kernel interface the runner's layers call. Layers never know which backend runs them:
 * the reference TypeScript backend, the native CPU addon (C++, AVX2/AVX-512, threads) or CUDA.
 *
 * Conventions: row-major; activations are Float32Array owned by the caller; outputs are
 * written into caller-provided arrays; `n` is the number of token rows in the batch.
 */

export type WeightDType = 'f32' | 'bf16' | 'f16' | 'nf4';

export interface WeightInit {
  dtype: WeightDType;
  /** out_features × in_features (the Hugging Face weight shape). */
  out: number;
  in: number;
  /** f32: Float32Array[out·in]; bf16 / f16: Uint16Array[out·in] of raw bits; nf4: Uint8Array[ceil(out·in/2)] packed codes. */
  data: Float32Array | Uint16Array | Uint8Array;
  /** nf4 only: bitsandbytes layout over the flattened weight, first element in the HIGH nibble. */
  nf4?: {
    blocksize: number;
    /** One scale per block, already dequantized (double quantization resolved by the loader). */
    absmax: Float32Array;
    /** The 16-entry code (bitsandbytes' NF4 table). */
    quantMap: Float32Array;
  };
}

/** An opaque handle: the backend may copy, repack or upload the weight. */
export interface WeightHandle {
  readonly dtype: WeightDType;
  readonly out: number;
  readonly in: number;
}

/**
 * One LoRA stack for one module, as `shared`'s StackedLora: y = rowScale ⊙ y + B (A x), with
 * A [rank, in], B [out, rank] (mix weights and scaling folded into B). A mix of adapters is one
 * stack of the summed rank; DoRA contributes rowScale.
 */
export interface LoraInit {
  rank: number;
  out: number;
  in: number;
  A: Float32Array;
  B: Float32Array;
  rowScale?: Float32Array;
  /** Storage precision of the factors inside the backend (default f32). */
  dtype?: 'f32' | 'bf16';
  /**
   * How B is stored. 'auto' (default): a LoRI-style B (≥ 80% exact zeros) is stored sparsely
   * where the backend's sparse expand beats its dense one for this shape (native: a calibrated
   * rule per kernel set; js: always). 'dense' / 'sparse' force one; 'sparse' needs rank ≤ 256.
   * Both give the dense numbers within f32 rounding.
   */
  layout?: 'auto' | 'dense' | 'sparse';
}

/** How a LoRA handle holds its factors: dense B, sparse B, or VeRA scales over shared projections. */
export type LoraLayout = 'dense' | 'sparse' | 'vera';

export interface LoraHandle {
  readonly rank: number;
  readonly out: number;
  readonly in: number;
  /** The layout the backend chose (backends without layouts leave it out: dense). */
  readonly layout?: LoraLayout;
  /** Bytes the backend holds for this handle: a sparse B as stored; a VeRA handle's shared projection not included. */
  readonly bytes?: number;
  /** VeRA handles: the shared projection they read. */
  readonly projection?: VeraProjectionHandle;
}

/**
 * VeRA's shared frozen projections, held once for every module and adapter that uses them
 * (same base, projection_prng_key and rank). A module reads the leading rows / columns.
 */
export interface VeraProjectionInit {
  rank: number;
  maxIn: number;
  maxOut: number;
  /** vera_A [rank, maxIn]. */
  A: Float32Array;
  /** vera_B [maxOut, rank]. */
  B: Float32Array;
  /** Storage precision inside the backend (default f32). */
  dtype?: 'f32' | 'bf16';
}

export interface VeraProjectionHandle {
  readonly rank: number;
  readonly maxIn: number;
  readonly maxOut: number;
  /** Bytes the backend holds for the projections. */
  readonly bytes: number;
}

/** One VeRA adapter's scales for one module; a mix weight is folded into lambdaB. */
export interface VeraTerm {
  /** λ_b [out]. */
  lambdaB: Float32Array;
  /** λ_d [rank]. */
  lambdaD: Float32Array;
}

/**
 * A VeRA module over a shared projection: y += Σ_k λ_b,k ⊙ (B_s[:out] (λ_d,k ⊙ (A_s[:, :in] x))).
 * Several terms (VeRA adapters of one mix sharing the projection) share one shrink A_s x.
 */
export interface VeraInit {
  projection: VeraProjectionHandle;
  out: number;
  in: number;
  terms: readonly VeraTerm[];
}

export interface AttentionArgs {
  /** Output [nTokens, heads·headDim]. */
  out: Float32Array;
  /** Queries [nTokens, heads·headDim], RoPE already applied. */
  q: Float32Array;
  nTokens: number;
  /** This sequence's cache for this layer: [capacity, kvHeads·headDim]; rows 0..start+nTokens-1 are filled. */
  kCache: Float32Array;
  vCache: Float32Array;
  /** Position of the first of the nTokens queries (causal: token t sees cache rows 0..start+t). */
  start: number;
  heads: number;
  kvHeads: number;
  headDim: number;
}

export interface Backend {
  readonly name: string;
  /** Worker threads for CPU backends. */
  setThreads?(n: number): void;
  createWeight(init: WeightInit): WeightHandle;
  createLora(init: LoraInit): LoraHandle;
  /** VeRA's shared projections (optional: without it, VeRA adapters run as materialized LoRA stacks). */
  createVeraProjection?(init: VeraProjectionInit): VeraProjectionHandle;
  /** A VeRA module handle, usable in `lora` beside ordinary LoRA handles. */
  createVera?(init: VeraInit): LoraHandle;
  /**
   * Releases native memory now instead of at garbage collection. A released VeRA projection
   * creates no more modules; the modules made from it keep it alive until they are released.
   */
  release?(h: WeightHandle | LoraHandle | VeraProjectionHandle): void;

  /** y[n, w.out] = x[n, w.in] · Wᵀ. */
  matmul(y: Float32Array, x: Float32Array, n: number, w: WeightHandle): void;
  /**
   * Multi-LoRA (Punica/S-LoRA style): for each row i with slots[i] ≥ 0, with h = handles[slots[i]]:
   * y_i = h.rowScale ⊙ y_i + h.B (h.A x_i). Rows of equal slot that are adjacent form a segment
   * (prefill: SGMV); single rows are gathered (decode: BGMV). Ranks and layouts (dense, sparse,
   * VeRA) may differ between handles.
   */
  lora(y: Float32Array, x: Float32Array, n: number, slots: Int32Array, handles: readonly LoraHandle[]): void;
  /** y[n, dim] = x / rms(x) · weight. y may alias x. */
  rmsnorm(y: Float32Array, x: Float32Array, n: number, dim: number, weight: Float32Array, eps: number): void;
  /** Hugging Face rotate_half RoPE in place on x[n, heads·headDim]; positions[i] is row i's position. */
  rope(x: Float32Array, n: number, heads: number, headDim: number, positions: Int32Array, theta: number): void;
  /** Causal GQA attention of one sequence's new tokens over its KV cache. */
  attention(args: AttentionArgs): void;
  /** gate[i] = silu(gate[i]) · up[i] for i < len. */
  siluMul(gate: Float32Array, up: Float32Array, len: number): void;
}
