// The AVX2 + FMA + F16C kernel set (compiled with those -m flags; used only when the CPU has them).
#if defined(__x86_64__) || defined(_M_X64)
#include "kernels.h"
#include "simd_avx2.h"
#include "impl.inc"

namespace le {
const KernelSet kAvx2Kernels = {"avx2", simd::W, gemv, gemvPrepSize, gemvPrepare, convert,
    gemm, loraExpand, loraExpandSparse, rowsTimes, siluMul, attendHead};
}
#endif
