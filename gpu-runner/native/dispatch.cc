#include "dispatch.h"

#include <atomic>
#include <cstring>

namespace le {
namespace {

bool hasAvx512() {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();  // also checks that the OS saves the wide registers
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

bool hasAvx2() {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

const KernelSet* best() {
#if defined(__x86_64__) || defined(_M_X64)
  if (hasAvx512()) return &kAvx512Kernels;
  if (hasAvx2()) return &kAvx2Kernels;
#endif
  return &kScalarKernels;
}

std::atomic<const KernelSet*>& current() {
  static std::atomic<const KernelSet*> k{best()};
  return k;
}

}  // namespace

const KernelSet& kernels() { return *current().load(std::memory_order_relaxed); }

bool selectKernels(const char* name) {
  const KernelSet* k = nullptr;
  if (std::strcmp(name, "auto") == 0) k = best();
  if (std::strcmp(name, "portable") == 0) k = &kScalarKernels;
#if defined(__x86_64__) || defined(_M_X64)
  if (std::strcmp(name, "avx2") == 0 && hasAvx2()) k = &kAvx2Kernels;
  if (std::strcmp(name, "avx512") == 0 && hasAvx512()) k = &kAvx512Kernels;
#endif
  if (!k) return false;
  current().store(k, std::memory_order_relaxed);
  return true;
}

}  // namespace le
