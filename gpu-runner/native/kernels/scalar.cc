// The portable kernel set: baseline flags only, runs on any CPU.
#include "kernels.h"
#include "simd_scalar.h"
#include "impl.inc"

namespace le {
const KernelSet kScalarKernels = {"portable", simd::W, gemv, gemvPrepSize, gemvPrepare, convert,
    gemm, loraExpand, loraExpandSparse, rowsTimes, siluMul, attendHead};
}
