// y = x · Wᵀ drivers: the GEMV path (weights streamed once, decoded on the fly) for a few rows,
// the cache-blocked GEMM path (weight panels converted to f32 once, reused by all rows) beyond.
#pragma once
#include <cstdint>

#include "kernels/kernels.h"

namespace le {

// Rows up to which a matmul streams the weight per group of kGemvRows rows instead of blocking.
constexpr int64_t kGemvMaxRows = 4;

bool gemvSupports(const KernelSet& ks, const WeightView& w);

// Single-threaded: rows [0, m) of x / y (row pointers), output columns [j0, j1). `prep`: the
// GEMV's prepared activations when the caller made them once for many calls (else null).
void matmulSerial(const KernelSet& ks, const WeightView& w, const float* const* x, float* const* y, int64_t m, int64_t j0, int64_t j1,
                  const float* prep = nullptr);

// All rows and columns, spread over the thread pool.
void matmulParallel(const WeightView& w, const float* const* x, float* const* y, int64_t m);

}  // namespace le
