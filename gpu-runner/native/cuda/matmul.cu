// y[n, out] = x[n, in] · Wᵀ on the device, W in f32, bf16, f16 or NF4 (see kernels.h for the
// layouts). Two paths:
// - GEMV (decode, n ≤ kGemvMaxRows): one warp per output row; each lane streams 8 consecutive
//   weights per step with one 16-byte load (f32: two; NF4: one 4-byte load of 8 codes), decodes
//   them in registers, and multiplies them by up to kGemvRows activation rows at once; the warp's
//   partial sums are combined with shuffles. Weight bytes are read exactly once per 4 rows.
// - GEMM (prefill): 64×64 output tiles, 16-deep K steps through shared memory, weights decoded
//   into shared memory as they are staged, a 4×4 register tile per thread; plain f32 FMA (no
//   tensor cores: the results must stay within f32 rounding of the reference).
#include <algorithm>

#include "common.cuh"

namespace le {
namespace cuda {
namespace {

constexpr int kGemvWarps = 8;  // output rows per GEMV block
constexpr int kGemvRows = 4;   // activation rows per GEMV pass

template <DType DT>
__device__ __forceinline__ void loadQuantMap(const DevWeight& w, float* qmap) {
  if constexpr (DT == DType::NF4) {
    if (threadIdx.x < 16) qmap[threadIdx.x] = __ldg(w.quantMap + threadIdx.x);
    __syncthreads();
  }
}

template <DType DT>
__global__ void __launch_bounds__(kGemvWarps * 32) gemvKernel(const DevWeight w, const float* __restrict__ x, float* __restrict__ y,
                                                               int64_t n) {
  __shared__ float qmap[16];
  loadQuantMap<DT>(w, qmap);
  const int lane = threadIdx.x & 31;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
  if (j >= w.out) return;  // whole warps only: j is uniform across a warp
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * kGemvRows;
  const int rows = static_cast<int>(n - i0 < kGemvRows ? n - i0 : kGemvRows);
  const int64_t ld = w.ld;
  const float* xr = x + i0 * ld;
  float acc[kGemvRows] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll 2
  for (int64_t k = lane * 8; k < w.in; k += 256) {
    float v[8];
    loadRow8<DT>(w, j, k, v, qmap);
#pragma unroll
    for (int r = 0; r < kGemvRows; r++) {
      if (r < rows) {
        const float4* xp = reinterpret_cast<const float4*>(xr + r * ld + k);
        const float4 a = __ldg(xp);
        const float4 b = __ldg(xp + 1);
        float s = acc[r];
        s = fmaf(v[0], a.x, s);
        s = fmaf(v[1], a.y, s);
        s = fmaf(v[2], a.z, s);
        s = fmaf(v[3], a.w, s);
        s = fmaf(v[4], b.x, s);
        s = fmaf(v[5], b.y, s);
        s = fmaf(v[6], b.z, s);
        s = fmaf(v[7], b.w, s);
        acc[r] = s;
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kGemvRows; r++) {
    if (r < rows) {
      const float s = warpSum(acc[r]);
      if (lane == 0) y[(i0 + r) * w.out + j] = s;
    }
  }
}

constexpr int kBM = 64;  // activation rows per tile
constexpr int kBN = 64;  // weight rows (outputs) per tile
constexpr int kBK = 16;  // K step (padK makes every row a multiple of it)
constexpr int kPadS = 4; // shared-memory row padding (keeps float4 alignment, spreads banks)

template <DType DT>
__global__ void __launch_bounds__(256) gemmKernel(const DevWeight w, const float* __restrict__ x, float* __restrict__ y, int64_t n) {
  __shared__ __align__(16) float xs[kBK][kBM + kPadS];
  __shared__ __align__(16) float ws[kBK][kBN + kPadS];
  __shared__ float qmap[16];
  loadQuantMap<DT>(w, qmap);
  const int t = threadIdx.x;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kBN;
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * kBM;
  const int tx = t & 15;  // output columns tx·4 .. +3
  const int ty = t >> 4;  // output rows ty·4 .. +3
  // Staging roles: every thread loads one float4 of x (row xr, columns xc..xc+3); threads < 128
  // load and decode 8 weights (row wr, columns wc..wc+7).
  const int xr = t >> 2, xc = (t & 3) * 4;
  const bool xok = i0 + xr < n;
  const float* xp = x + (xok ? (i0 + xr) * w.ld : 0) + xc;
  const int wr = t >> 1, wc = (t & 1) * 8;
  const bool wok = t < 128 && j0 + wr < w.out;
  float acc[4][4];
#pragma unroll
  for (int a = 0; a < 4; a++)
#pragma unroll
    for (int b = 0; b < 4; b++) acc[a][b] = 0.0f;

  for (int64_t k0 = 0; k0 < w.in; k0 += kBK) {
    const float4 xv = xok ? __ldg(reinterpret_cast<const float4*>(xp + k0)) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    xs[xc + 0][xr] = xv.x;
    xs[xc + 1][xr] = xv.y;
    xs[xc + 2][xr] = xv.z;
    xs[xc + 3][xr] = xv.w;
    if (t < 128) {
      float v[8];
      if (wok && k0 + wc < w.in) {
        loadRow8<DT>(w, j0 + wr, k0 + wc, v, qmap);
      } else {
#pragma unroll
        for (int e = 0; e < 8; e++) v[e] = 0.0f;
      }
#pragma unroll
      for (int e = 0; e < 8; e++) ws[wc + e][wr] = v[e];
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; kk++) {
      const float4 a = *reinterpret_cast<const float4*>(&xs[kk][ty * 4]);
      const float4 b = *reinterpret_cast<const float4*>(&ws[kk][tx * 4]);
      const float av[4] = {a.x, a.y, a.z, a.w};
      const float bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
      for (int p = 0; p < 4; p++)
#pragma unroll
        for (int q = 0; q < 4; q++) acc[p][q] = fmaf(av[p], bv[q], acc[p][q]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int p = 0; p < 4; p++) {
    const int64_t i = i0 + ty * 4 + p;
    if (i >= n) break;
#pragma unroll
    for (int q = 0; q < 4; q++) {
      const int64_t j = j0 + tx * 4 + q;
      if (j < w.out) y[i * w.out + j] = acc[p][q];
    }
  }
}

constexpr int64_t kMaxGridY = 65535;

template <DType DT>
cudaError_t runGemv(const DevWeight& w, const float* x, float* y, int64_t n, cudaStream_t s) {
  const int64_t chunk = kMaxGridY * kGemvRows;
  for (int64_t i = 0; i < n; i += chunk) {
    const int64_t m = std::min(chunk, n - i);
    const dim3 grid(static_cast<unsigned>((w.out + kGemvWarps - 1) / kGemvWarps), static_cast<unsigned>((m + kGemvRows - 1) / kGemvRows));
    gemvKernel<DT><<<grid, kGemvWarps * 32, 0, s>>>(w, x + i * w.ld, y + i * w.out, m);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

template <DType DT>
cudaError_t runGemm(const DevWeight& w, const float* x, float* y, int64_t n, cudaStream_t s) {
  const int64_t chunk = kMaxGridY * kBM;
  for (int64_t i = 0; i < n; i += chunk) {
    const int64_t m = std::min(chunk, n - i);
    const dim3 grid(static_cast<unsigned>((w.out + kBN - 1) / kBN), static_cast<unsigned>((m + kBM - 1) / kBM));
    gemmKernel<DT><<<grid, 256, 0, s>>>(w, x + i * w.ld, y + i * w.out, m);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

template <DType DT>
cudaError_t run(const DevWeight& w, const float* x, float* y, int64_t n, int path, cudaStream_t s) {
  const bool gemv = path == 1 || (path == 0 && n <= kGemvMaxRows);
  return gemv ? runGemv<DT>(w, x, y, n, s) : runGemm<DT>(w, x, y, n, s);
}

}  // namespace

cudaError_t launchMatmulPath(const DevWeight& w, const float* x, float* y, int64_t n, int path, cudaStream_t stream) {
  if (n <= 0 || w.out <= 0) return cudaSuccess;
  switch (w.dtype) {
    case DType::F32:
      return run<DType::F32>(w, x, y, n, path, stream);
    case DType::BF16:
      return run<DType::BF16>(w, x, y, n, path, stream);
    case DType::F16:
      return run<DType::F16>(w, x, y, n, path, stream);
    case DType::NF4:
      return run<DType::NF4>(w, x, y, n, path, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t launchMatmul(const DevWeight& w, const float* x, float* y, int64_t n, cudaStream_t stream) {
  return launchMatmulPath(w, x, y, n, 0, stream);
}

}  // namespace cuda
}  // namespace le
