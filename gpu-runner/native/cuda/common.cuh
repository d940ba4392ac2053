// Device helpers shared by matmul.cu and ops.cu: exact 16-bit decoding, NF4 decoding, warp sums,
// and the "8 consecutive weights of row j from column k" loader every matmul-shaped kernel uses.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels.h"

namespace le {
namespace cuda {

constexpr unsigned kFullMask = 0xffffffffu;

// bf16 → f32 is a shift (exact for every pattern, NaN payloads kept).
__device__ __forceinline__ float bf16ToF32(uint32_t h) { return __uint_as_float(h << 16); }
// f16 → f32 through the hardware conversion (exact, subnormals included).
__device__ __forceinline__ float f16ToF32(uint32_t h) { return __half2float(__ushort_as_half(static_cast<unsigned short>(h))); }

__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ double warpSum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ float warpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// Two bf16 / f16 values packed in a 32-bit word (element 0 in the low half).
__device__ __forceinline__ void unpack16(uint32_t u, float& a, float& b, bool bf16) {
  if (bf16) {
    a = __uint_as_float(u << 16);
    b = __uint_as_float(u & 0xffff0000u);
  } else {
    a = f16ToF32(u & 0xffffu);
    b = f16ToF32(u >> 16);
  }
}

// The NF4 code of element e (0..7) of a little-endian 32-bit word holding 8 codes, first
// element of each byte in the high nibble.
__device__ __forceinline__ uint32_t nf4Code(uint32_t word, int e) { return (word >> (8 * (e >> 1) + ((e & 1) ? 0 : 4))) & 15u; }

// NF4 value: quantMap[code] · absmax rounded to f32 once (no contraction with the later FMA), as
// bitsandbytes dequantizes.
__device__ __forceinline__ float nf4Value(const float* qmap, uint32_t code, float scale) { return __fmul_rn(qmap[code], scale); }

// Loads weights k..k+7 of row j (k a multiple of 8, k < in) decoded to f32 into v. Elements at
// or past `in` come back as 0 (the storage is zero padded; NF4 padding is masked explicitly,
// since its code 0 is not the value 0). `qmap` is the 16-entry NF4 code in shared memory.
template <DType DT>
__device__ __forceinline__ void loadRow8(const DevWeight& w, int64_t j, int64_t k, float (&v)[8], const float* qmap) {
  if constexpr (DT == DType::F32) {
    const float4* p = reinterpret_cast<const float4*>(static_cast<const float*>(w.data) + j * w.ld + k);
    const float4 a = __ldg(p);
    const float4 b = __ldg(p + 1);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  } else if constexpr (DT == DType::BF16 || DT == DType::F16) {
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(w.data) + j * w.ld + k));
    constexpr bool kBf16 = DT == DType::BF16;
    unpack16(u.x, v[0], v[1], kBf16);
    unpack16(u.y, v[2], v[3], kBf16);
    unpack16(u.z, v[4], v[5], kBf16);
    unpack16(u.w, v[6], v[7], kBf16);
  } else {
    const uint32_t word = __ldg(reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(w.data) + (j * w.ld + k) / 2));
    const int64_t f0 = j * w.in + k;  // flattened index of element k of row j: absmax is indexed by it
    const int64_t valid = w.in - k;   // elements of this chunk inside the row (≥ 1)
    if (w.blockShift >= 0 && valid >= 8 && (f0 >> w.blockShift) == ((f0 + 7) >> w.blockShift)) {
      const float s = __ldg(w.absmax + (f0 >> w.blockShift));
#pragma unroll
      for (int e = 0; e < 8; e++) v[e] = nf4Value(qmap, nf4Code(word, e), s);
    } else {
#pragma unroll
      for (int e = 0; e < 8; e++) {
        if (e < valid) {
          const int64_t f = f0 + e;
          const int64_t b = w.blockShift >= 0 ? (f >> w.blockShift) : f / w.blocksize;
          v[e] = nf4Value(qmap, nf4Code(word, e), __ldg(w.absmax + b));
        } else {
          v[e] = 0.0f;
        }
      }
    }
  }
}

}  // namespace cuda
}  // namespace le
