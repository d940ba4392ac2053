// The CUDA kernels' host-side interface: plain C++ (no device syntax), so addon.cc compiles with
// g++ while matmul.cu / ops.cu compile with nvcc. Every launcher enqueues on the given stream and
// returns the launch status; the caller (addon.cc) checks it and turns failures into JS errors.
//
// Device layouts (set up by addon.cc):
// - a weight [out, in] is stored row-padded: row j starts at element j·ld, ld = padK(in), and the
//   elements in [in, ld) are zero (NF4: row j's codes start at byte j·ld/2, first element of each
//   byte in the HIGH nibble, as bitsandbytes; absmax stays indexed by the flattened element
//   index j·in + k, exactly as the caller gave it);
// - activations x [n, in] are staged with the same padded stride ld and zero padding, so vector
//   loads never straddle rows and need no tail handling;
// - outputs y [n, out] are dense, like the caller's arrays.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#ifdef __CUDACC__
#define LE_HOST_DEVICE __host__ __device__
#else
#define LE_HOST_DEVICE
#endif

namespace le {
namespace cuda {

enum class DType : int32_t { F32 = 0, BF16 = 1, F16 = 2, NF4 = 3 };

// Row stride (elements) of padded weights and staged activations: a multiple of 16 elements, so
// every row starts 64-byte aligned for f32, 32 for 16-bit and 8 for NF4 codes.
LE_HOST_DEVICE inline int64_t padK(int64_t in) { return (in + 15) / 16 * 16; }

// A weight as the kernels see it (passed by value as a kernel parameter).
struct DevWeight {
  DType dtype;
  int32_t blockShift;  // NF4: log2(blocksize) when it is a power of two, else -1
  int64_t out;
  int64_t in;
  int64_t ld;
  const void* data;
  const float* absmax;    // NF4 only: one scale per block of the flattened weight
  const float* quantMap;  // NF4 only: the 16-entry code (device memory; staged into shared memory)
  int64_t blocksize;      // NF4 only
};

// y[n, out] = x[n, ld] · Wᵀ. GEMV kernels (one warp per output row, weights decoded on the fly)
// for n ≤ kGemvMaxRows, a tiled GEMM (weights decoded into shared memory) otherwise.
constexpr int64_t kGemvMaxRows = 8;
cudaError_t launchMatmul(const DevWeight& w, const float* x, float* y, int64_t n, cudaStream_t stream);
// Forces one path, for tests and timing: 1 = GEMV, 2 = GEMM, 0 = automatic.
cudaError_t launchMatmulPath(const DevWeight& w, const float* x, float* y, int64_t n, int path, cudaStream_t stream);

// One LoRA stack on the device: A [rank, ldA = padK(in)] (zero padded), Bt = Bᵀ [rank, out], both
// f32 or bf16; rowScale [out] or null.
struct LoraDesc {
  const void* A;
  const void* Bt;
  const float* rowScale;
  int32_t rank;
  int32_t bf16;
};

// A group of up to kLoraRows rows of one slot: rows order[first .. first+count) of the batch.
constexpr int kLoraRows = 4;
struct LoraItem {
  int32_t slot;
  int32_t first;
  int32_t count;
};

// Multi-LoRA: shrink t[p, r] = A_s x_order[p] (p in grouped order, t row stride maxRank), then
// expand y_order[p] = rowScale ⊙ y_order[p] + B_s t[p]. descs[nDescs], items[nItems] and
// order[active] are device arrays. x is staged [n, padK(in)], y dense [n, out].
cudaError_t launchLora(const LoraDesc* descs, const LoraItem* items, int32_t nItems, const int32_t* order, const float* x, int64_t in,
                       float* y, int64_t out, float* t, int32_t maxRank, cudaStream_t stream);

// y = x / rms(x) · weight per row of dim elements (sum of squares in double).
cudaError_t launchRmsnorm(float* y, const float* x, int64_t n, int64_t dim, const float* weight, float eps, cudaStream_t stream);

// rotate_half RoPE in place; invFreq[headDim/2] in double (computed on the host like the CPU path).
cudaError_t launchRope(float* x, int64_t n, int64_t heads, int64_t headDim, const int32_t* positions, const double* invFreq,
                       cudaStream_t stream);

// Causal GQA attention, one block per (token, head), online softmax over keys 0..start+t.
// headDim up to kMaxHeadDim.
constexpr int64_t kMaxHeadDim = 2048;
cudaError_t launchAttention(float* out, const float* q, const float* k, const float* v, int64_t nTokens, int64_t start, int64_t heads,
                            int64_t kvHeads, int64_t headDim, cudaStream_t stream);

// gate = silu(gate) · up (gate and up may be the same array).
cudaError_t launchSiluMul(float* gate, const float* up, int64_t len, cudaStream_t stream);

}  // namespace cuda
}  // namespace le
