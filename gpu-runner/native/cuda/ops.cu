// The other ops of the Backend contract on the device: multi-LoRA (shrink / expand over slot
// groups, Punica-style), rmsnorm, rope (rotate_half), causal GQA attention (one block per
// (token, head), online softmax) and siluMul.
#include <algorithm>
#include <cmath>

#include "common.cuh"

namespace le {
namespace cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// Multi-LoRA. The host groups the batch's rows by slot (rows of one slot, adjacent or not, in
// batch order) and cuts each group into items of ≤ kLoraRows rows. A prefill segment becomes a
// run of items over contiguous rows (SGMV); decode rows of one adapter scattered through the
// batch are gathered through `order` (BGMV). Each item carries its own slot, so ranks and factor
// precisions may differ from item to item within one launch.

constexpr int kShrinkWarps = 8;    // ranks per shrink block (one warp each)
constexpr int kExpandThreads = 256;  // outputs per expand block (one thread each)

// t[first + q, r] = A[r, :] · x[order[first + q], :] — warp per rank r, lanes along `in` with
// 16-byte loads of A (f32: two), the item's rows multiplied against the same A chunk.
__global__ void __launch_bounds__(kShrinkWarps * 32) loraShrinkKernel(const LoraDesc* __restrict__ descs,
                                                                        const LoraItem* __restrict__ items,
                                                                        const int32_t* __restrict__ order, const float* __restrict__ x,
                                                                        int64_t in, float* __restrict__ t, int32_t maxRank) {
  const LoraItem it = items[blockIdx.x];
  const LoraDesc d = descs[it.slot];
  const int r = static_cast<int>(blockIdx.y) * kShrinkWarps + static_cast<int>(threadIdx.x >> 5);
  if (r >= d.rank) return;
  const int lane = threadIdx.x & 31;
  const int64_t ld = padK(in);
  const float* xr[kLoraRows];
#pragma unroll
  for (int q = 0; q < kLoraRows; q++) xr[q] = x + (q < it.count ? static_cast<int64_t>(order[it.first + q]) * ld : 0);
  float acc[kLoraRows] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int64_t k = lane * 8; k < in; k += 256) {
    float a[8];
    if (d.bf16) {
      const uint4 u = __ldg(reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(d.A) + r * ld + k));
      unpack16(u.x, a[0], a[1], true);
      unpack16(u.y, a[2], a[3], true);
      unpack16(u.z, a[4], a[5], true);
      unpack16(u.w, a[6], a[7], true);
    } else {
      const float4* p = reinterpret_cast<const float4*>(static_cast<const float*>(d.A) + r * ld + k);
      const float4 u = __ldg(p);
      const float4 v = __ldg(p + 1);
      a[0] = u.x, a[1] = u.y, a[2] = u.z, a[3] = u.w, a[4] = v.x, a[5] = v.y, a[6] = v.z, a[7] = v.w;
    }
#pragma unroll
    for (int q = 0; q < kLoraRows; q++) {
      if (q < it.count) {
        const float4* xp = reinterpret_cast<const float4*>(xr[q] + k);
        const float4 u = __ldg(xp);
        const float4 v = __ldg(xp + 1);
        float s = acc[q];
        s = fmaf(a[0], u.x, s);
        s = fmaf(a[1], u.y, s);
        s = fmaf(a[2], u.z, s);
        s = fmaf(a[3], u.w, s);
        s = fmaf(a[4], v.x, s);
        s = fmaf(a[5], v.y, s);
        s = fmaf(a[6], v.z, s);
        s = fmaf(a[7], v.w, s);
        acc[q] = s;
      }
    }
  }
#pragma unroll
  for (int q = 0; q < kLoraRows; q++) {
    if (q < it.count) {
      const float s = warpSum(acc[q]);
      if (lane == 0) t[static_cast<int64_t>(it.first + q) * maxRank + r] = s;
    }
  }
}

// y[order[first + q], j] = rowScale[j] · y[…, j] + Σ_r Bt[r, j] · t[first + q, r] — thread per
// output j: Bt = Bᵀ is read along contiguous rows (coalesced), t is a broadcast.
__global__ void __launch_bounds__(kExpandThreads) loraExpandKernel(const LoraDesc* __restrict__ descs, const LoraItem* __restrict__ items,
                                                                   const int32_t* __restrict__ order, float* __restrict__ y, int64_t out,
                                                                   const float* __restrict__ t, int32_t maxRank) {
  const LoraItem it = items[blockIdx.x];
  const LoraDesc d = descs[it.slot];
  const int64_t j = static_cast<int64_t>(blockIdx.y) * kExpandThreads + threadIdx.x;
  if (j >= out) return;
  const float scale = d.rowScale ? __ldg(d.rowScale + j) : 1.0f;
  float* yr[kLoraRows];
  float acc[kLoraRows];
#pragma unroll
  for (int q = 0; q < kLoraRows; q++) {
    yr[q] = y + (q < it.count ? static_cast<int64_t>(order[it.first + q]) * out : 0) + j;
    acc[q] = q < it.count ? (d.rowScale ? *yr[q] * scale : *yr[q]) : 0.0f;
  }
  const float* tr = t + static_cast<int64_t>(it.first) * maxRank;
  for (int r = 0; r < d.rank; r++) {
    const float b = d.bf16 ? bf16ToF32(__ldg(static_cast<const uint16_t*>(d.Bt) + static_cast<int64_t>(r) * out + j))
                           : __ldg(static_cast<const float*>(d.Bt) + static_cast<int64_t>(r) * out + j);
#pragma unroll
    for (int q = 0; q < kLoraRows; q++)
      if (q < it.count) acc[q] = fmaf(b, tr[q * maxRank + r], acc[q]);
  }
#pragma unroll
  for (int q = 0; q < kLoraRows; q++)
    if (q < it.count) *yr[q] = acc[q];
}

// ---------------------------------------------------------------------------------------------
// rmsnorm: one block per row; the sum of squares in double (as the CPU path), then y = x·inv·w.

constexpr int kNormThreads = 256;

__global__ void __launch_bounds__(kNormThreads) rmsnormKernel(float* __restrict__ y, const float* __restrict__ x, int64_t dim,
                                                               const float* __restrict__ weight, float eps) {
  __shared__ double part[kNormThreads / 32];
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  float* yr = y + static_cast<int64_t>(blockIdx.x) * dim;
  double s = 0.0;
  for (int64_t j = threadIdx.x; j < dim; j += kNormThreads) {
    const double v = xr[j];
    s += v * v;
  }
  s = warpSum(s);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) part[warp] = s;
  __syncthreads();
  if (warp == 0) {
    s = lane < kNormThreads / 32 ? part[lane] : 0.0;
    s = warpSum(s);
    if (lane == 0) part[0] = s;
  }
  __syncthreads();
  const float inv = static_cast<float>(1.0 / sqrt(part[0] / static_cast<double>(dim) + static_cast<double>(eps)));
  for (int64_t j = threadIdx.x; j < dim; j += kNormThreads) yr[j] = __fmul_rn(__fmul_rn(xr[j], inv), weight[j]);
}

// ---------------------------------------------------------------------------------------------
// rope: thread per (row, i < headDim/2), looping over heads so each angle's sin/cos (double, as
// the CPU path) is computed once per row.

__global__ void ropeKernel(float* __restrict__ x, int64_t n, int64_t heads, int64_t headDim, const int32_t* __restrict__ positions,
                           const double* __restrict__ invFreq) {
  const int64_t half = headDim / 2;
  const int64_t total = n * half;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = idx / half;
    const int64_t i = idx - r * half;
    double s, c;
    sincos(static_cast<double>(positions[r]) * invFreq[i], &s, &c);
    float* row = x + r * heads * headDim;
    for (int64_t h = 0; h < heads; h++) {
      float* v = row + h * headDim;
      const double x0 = v[i], x1 = v[i + half];
      v[i] = static_cast<float>(x0 * c - x1 * s);
      v[i + half] = static_cast<float>(x1 * c + x0 * s);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Attention: one block per (token, head), kAttnWarps warps. Warp w visits keys w, w + kAttnWarps,
// …: lanes split headDim for the score (a warp sum), then the warp keeps its own online-softmax
// state (max m, sum l, output o). The warps' states are merged at the end. With C > 0 each lane
// keeps C query / output dimensions (d = lane + 32c) in registers (headDim ≤ 32·C); C == 0 keeps
// them in shared memory (any headDim up to kMaxHeadDim).

constexpr int kAttnWarps = 4;

template <int C>
__global__ void __launch_bounds__(kAttnWarps * 32) attentionKernel(float* __restrict__ out, const float* __restrict__ q,
                                                                    const float* __restrict__ k, const float* __restrict__ v, int64_t start,
                                                                    int64_t heads, int64_t kvHeads, int64_t hd, float scale) {
  extern __shared__ float sm[];
  float* mW = sm;                          // [kAttnWarps]
  float* lW = sm + kAttnWarps;             // [kAttnWarps]
  float* oW = sm + 2 * kAttnWarps;         // [kAttnWarps][hd]
  float* qS = oW + kAttnWarps * hd;        // [hd] (C == 0 only)
  const int64_t task = blockIdx.x;
  const int64_t tok = task / heads;
  const int64_t h = task - tok * heads;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t len = start + tok + 1;
  const int64_t kvDim = kvHeads * hd;
  const int64_t kvOff = (h / (heads / kvHeads)) * hd;
  const float* qp = q + (tok * heads + h) * hd;
  float* ow = oW + warp * hd;

  constexpr int CR = C > 0 ? C : 1;
  float qr[CR], o[CR];
  if constexpr (C > 0) {
#pragma unroll
    for (int c = 0; c < C; c++) {
      const int64_t d = lane + 32 * c;
      qr[c] = d < hd ? qp[d] : 0.0f;
      o[c] = 0.0f;
    }
  } else {
    for (int64_t d = threadIdx.x; d < hd; d += kAttnWarps * 32) qS[d] = qp[d];
    for (int64_t d = lane; d < hd; d += 32) ow[d] = 0.0f;
    __syncthreads();
  }

  float m = -INFINITY, l = 0.0f;
  for (int64_t j = warp; j < len; j += kAttnWarps) {
    const float* kr = k + j * kvDim + kvOff;
    const float* vr = v + j * kvDim + kvOff;
    float s = 0.0f;
    if constexpr (C > 0) {
#pragma unroll
      for (int c = 0; c < C; c++) {
        const int64_t d = lane + 32 * c;
        if (d < hd) s = fmaf(qr[c], __ldg(kr + d), s);
      }
    } else {
      for (int64_t d = lane; d < hd; d += 32) s = fmaf(qS[d], __ldg(kr + d), s);
    }
    s = warpSum(s) * scale;
    const float mNew = fmaxf(m, s);
    const float corr = expf(m - mNew);  // 0 for the first key (m = -inf)
    const float p = expf(s - mNew);
    l = l * corr + p;
    if constexpr (C > 0) {
#pragma unroll
      for (int c = 0; c < C; c++) {
        const int64_t d = lane + 32 * c;
        if (d < hd) o[c] = fmaf(p, __ldg(vr + d), o[c] * corr);
      }
    } else {
      for (int64_t d = lane; d < hd; d += 32) ow[d] = fmaf(p, __ldg(vr + d), ow[d] * corr);
    }
    m = mNew;
  }
  if (lane == 0) {
    mW[warp] = m;
    lW[warp] = l;
  }
  if constexpr (C > 0) {
#pragma unroll
    for (int c = 0; c < C; c++) {
      const int64_t d = lane + 32 * c;
      if (d < hd) ow[d] = o[c];
    }
  }
  __syncthreads();
  float M = mW[0];
#pragma unroll
  for (int w = 1; w < kAttnWarps; w++) M = fmaxf(M, mW[w]);
  float f[kAttnWarps];
  float L = 0.0f;
#pragma unroll
  for (int w = 0; w < kAttnWarps; w++) {
    f[w] = mW[w] == -INFINITY ? 0.0f : expf(mW[w] - M);  // a warp that saw no key contributes nothing
    L += lW[w] * f[w];
  }
  float* op = out + (tok * heads + h) * hd;
  for (int64_t d = threadIdx.x; d < hd; d += kAttnWarps * 32) {
    float acc = 0.0f;
#pragma unroll
    for (int w = 0; w < kAttnWarps; w++) acc = fmaf(oW[w * hd + d], f[w], acc);
    op[d] = acc / L;
  }
}

// ---------------------------------------------------------------------------------------------
// siluMul: elementwise, 16-byte accesses (the staging buffers are 256-byte aligned).

__device__ __forceinline__ float siluMul1(float g, float u) { return g / (1.0f + expf(-g)) * u; }

__global__ void siluMulKernel(float* gate, const float* up, int64_t len) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t n4 = len / 4;
  float4* g4 = reinterpret_cast<float4*>(gate);
  const float4* u4 = reinterpret_cast<const float4*>(up);
  for (int64_t i = first; i < n4; i += stride) {
    float4 g = g4[i];
    const float4 u = u4[i];
    g.x = siluMul1(g.x, u.x);
    g.y = siluMul1(g.y, u.y);
    g.z = siluMul1(g.z, u.z);
    g.w = siluMul1(g.w, u.w);
    g4[i] = g;
  }
  for (int64_t i = n4 * 4 + first; i < len; i += stride) gate[i] = siluMul1(gate[i], up[i]);
}

unsigned gridFor(int64_t work, int threads, int64_t cap = 1 << 16) {
  const int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(blocks, cap)));
}

}  // namespace

cudaError_t launchLora(const LoraDesc* descs, const LoraItem* items, int32_t nItems, const int32_t* order, const float* x, int64_t in,
                       float* y, int64_t out, float* t, int32_t maxRank, cudaStream_t stream) {
  if (nItems <= 0) return cudaSuccess;
  const dim3 shrinkGrid(static_cast<unsigned>(nItems), static_cast<unsigned>((maxRank + kShrinkWarps - 1) / kShrinkWarps));
  loraShrinkKernel<<<shrinkGrid, kShrinkWarps * 32, 0, stream>>>(descs, items, order, x, in, t, maxRank);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  const dim3 expandGrid(static_cast<unsigned>(nItems), static_cast<unsigned>((out + kExpandThreads - 1) / kExpandThreads));
  loraExpandKernel<<<expandGrid, kExpandThreads, 0, stream>>>(descs, items, order, y, out, t, maxRank);
  return cudaGetLastError();
}

cudaError_t launchRmsnorm(float* y, const float* x, int64_t n, int64_t dim, const float* weight, float eps, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  rmsnormKernel<<<static_cast<unsigned>(n), kNormThreads, 0, stream>>>(y, x, dim, weight, eps);
  return cudaGetLastError();
}

cudaError_t launchRope(float* x, int64_t n, int64_t heads, int64_t headDim, const int32_t* positions, const double* invFreq,
                       cudaStream_t stream) {
  const int64_t work = n * (headDim / 2);
  if (work <= 0) return cudaSuccess;
  ropeKernel<<<gridFor(work, 256), 256, 0, stream>>>(x, n, heads, headDim, positions, invFreq);
  return cudaGetLastError();
}

cudaError_t launchAttention(float* out, const float* q, const float* k, const float* v, int64_t nTokens, int64_t start, int64_t heads,
                            int64_t kvHeads, int64_t headDim, cudaStream_t stream) {
  if (nTokens <= 0) return cudaSuccess;
  if (headDim > kMaxHeadDim) return cudaErrorInvalidValue;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(headDim)));
  const int64_t blocks = nTokens * heads;
  if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
  const size_t base = (2 * kAttnWarps + kAttnWarps * headDim) * sizeof(float);
  const dim3 grid(static_cast<unsigned>(blocks));
  const int threads = kAttnWarps * 32;
  if (headDim <= 32) {
    attentionKernel<1><<<grid, threads, base, stream>>>(out, q, k, v, start, heads, kvHeads, headDim, scale);
  } else if (headDim <= 64) {
    attentionKernel<2><<<grid, threads, base, stream>>>(out, q, k, v, start, heads, kvHeads, headDim, scale);
  } else if (headDim <= 128) {
    attentionKernel<4><<<grid, threads, base, stream>>>(out, q, k, v, start, heads, kvHeads, headDim, scale);
  } else if (headDim <= 256) {
    attentionKernel<8><<<grid, threads, base, stream>>>(out, q, k, v, start, heads, kvHeads, headDim, scale);
  } else {
    attentionKernel<0><<<grid, threads, base + headDim * sizeof(float), stream>>>(out, q, k, v, start, heads, kvHeads, headDim, scale);
  }
  return cudaGetLastError();
}

cudaError_t launchSiluMul(float* gate, const float* up, int64_t len, cudaStream_t stream) {
  if (len <= 0) return cudaSuccess;
  siluMulKernel<<<gridFor((len + 3) / 4, 256, 8192), 256, 0, stream>>>(gate, up, len);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace le
