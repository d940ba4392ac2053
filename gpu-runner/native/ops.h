// The element-wise and attention ops of a decoder layer (arguments validated by the caller).
#pragma once
#include <cstdint>

namespace le {

// y[n, dim] = x / rms(x) · weight; y may be x.
void rmsnorm(float* y, const float* x, int64_t n, int64_t dim, const float* weight, float eps);
// Hugging Face rotate_half RoPE in place; angles in double, inv_freq = theta^(-2i/headDim).
void rope(float* x, int64_t n, int64_t heads, int64_t headDim, const int32_t* positions, double theta);
// gate = silu(gate) · up
void siluMul(float* gate, const float* up, int64_t len);

struct AttentionShape {
  int64_t nTokens, start, heads, kvHeads, headDim;
};
// Causal GQA attention of nTokens queries at positions start.. over a KV cache.
void attention(float* out, const float* q, const float* kCache, const float* vCache, AttentionShape s);

// Fuses one low-rank term into a weight: w[out, in] = (src ? src : w) + b[out, r] · a[r, in] (b
// already scaled). Rows in parallel, each block copied from src (when given) and fused while hot,
// through the LoRA kernels' rows-times-matrix op.
void fuseRows(float* w, int64_t out, int64_t in, const float* b, const float* a, int64_t r, const float* src);

}  // namespace le
