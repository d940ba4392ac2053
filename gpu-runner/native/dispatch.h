// Picks the kernel set for this CPU at run time (AVX-512 → AVX2 → portable), or a forced one.
#pragma once
#include "kernels/kernels.h"

namespace le {

const KernelSet& kernels();
// "auto", "avx512", "avx2" or "portable"; false when this CPU (or build) lacks it.
bool selectKernels(const char* name);

}  // namespace le
