// CPU emulation of the little CUDA device language the kernels use, for checking them on a
// machine without a GPU (native/cuda/emu/build.mjs compiles matmul.cu / ops.cu against this with
// g++). Every CUDA thread of a block is a fiber; blocks run one after another; __syncthreads and
// warp shuffles are barriers across the block's / warp's live fibers; fibers run in a shuffled
// order between barriers, so a missing barrier shows up as wrong numbers. Shared memory is static
// storage (one block at a time), dynamic shared memory a per-launch buffer.
//
// Not emulated: timing, the memory model beyond sequential consistency, and anything these
// kernels do not use. It is a test harness, never part of the module that ships.
#pragma once
#include <cuda_runtime_api.h>
#include <vector_functions.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>

// host_defines.h maps these to attributes g++ ignores; the emulator needs its own meaning.
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __shared__
#undef __launch_bounds__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

namespace emu {

struct State {
  uint3 threadIdx_;
  uint3 blockIdx_;
  dim3 blockDim_;
  dim3 gridDim_;
};
extern State g;

void syncthreads();
void syncwarp();
// Exchange through the warp: lane writes v, then reads lane (lane ^ mask)'s value.
double shflXorD(double v, int laneMask);
void* dynamicShared();
template <class T>
T* dynamicSharedAs() {
  return static_cast<T*>(dynamicShared());
}

// Runs body once per thread of every block of the grid; returns the launch status (invalid
// configurations are refused like the hardware does).
cudaError_t launch(const std::function<void()>& body, dim3 grid, dim3 block, size_t sharedBytes = 0, cudaStream_t stream = nullptr);

}  // namespace emu

#define threadIdx (::emu::g.threadIdx_)
#define blockIdx (::emu::g.blockIdx_)
#define blockDim (::emu::g.blockDim_)
#define gridDim (::emu::g.gridDim_)

inline void __syncthreads() { emu::syncthreads(); }

inline float __shfl_xor_sync(unsigned, float v, int m) { return static_cast<float>(emu::shflXorD(v, m)); }
inline double __shfl_xor_sync(unsigned, double v, int m) { return emu::shflXorD(v, m); }

namespace emu {
[[noreturn]] void misaligned(const void* p, size_t align);
}
// A misaligned vector load faults on the GPU ("misaligned address"): here too.
template <class T>
inline T __ldg(const T* p) {
  if (reinterpret_cast<uintptr_t>(p) % alignof(T)) emu::misaligned(p, alignof(T));
  return *p;
}

inline float __uint_as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float __fmul_rn(float a, float b) {
  volatile float r = a * b;  // no contraction with a following add
  return r;
}

struct EmuHalf {
  unsigned short bits;
};
inline EmuHalf __ushort_as_half(unsigned short h) { return {h}; }
inline float __half2float(EmuHalf h) {
  const uint32_t s = (h.bits & 0x8000u) << 16, e = (h.bits >> 10) & 31, m = h.bits & 1023;
  uint32_t out;
  if (e == 31) {
    out = s | 0x7f800000u | (m << 13);
  } else if (e == 0) {
    if (m == 0) {
      out = s;
    } else {  // subnormal: normalize
      int shift = 0;
      uint32_t mm = m;
      while (!(mm & 1024)) {
        mm <<= 1;
        shift++;
      }
      out = s | ((127 - 15 + 1 - shift) << 23) | ((mm & 1023) << 13);
    }
  } else {
    out = s | ((e + 127 - 15) << 23) | (m << 13);
  }
  return __uint_as_float(out);
}
