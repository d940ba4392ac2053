// The AVX-512 kernel set (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq; used only
// when the CPU reports those features).
#if defined(__x86_64__) || defined(_M_X64)
#include "kernels.h"
#include "simd_avx512.h"
#include "impl.inc"

namespace le {
const KernelSet kAvx512Kernels = {"avx512", simd::W, gemv, gemvPrepSize, gemvPrepare, convert,
    gemm, loraExpand, loraExpandSparse, rowsTimes, siluMul, attendHead};
}
#endif
