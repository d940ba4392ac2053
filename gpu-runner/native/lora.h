// The multi-LoRA op: rows grouped by slot (segments and scattered rows alike, gathered through
// row pointers), shrink T = X Aᵀ per group, then expand y = rowScale ⊙ y + T Bᵀ (dense Bᵀ,
// sparse B, or VeRA's shared projections with per-module scales).
#pragma once
#include <cstdint>
#include <vector>

#include "storage.h"

namespace le {

// Inputs are validated by the caller: slots[i] < handles.size(), all handles alive and of
// matching shape, x [n, in] and y [n, out].
void loraApply(float* y, const float* x, int64_t n, const int32_t* slots, const std::vector<const LoraNative*>& handles);

// The layout rule for a B that is sparse enough to be a candidate: whether the sparse expand
// (`slots` padded slots over ceil(out / kSparseLanes) blocks) beats the dense one (rank steps
// per block) with the given kernel set. A calibrated rule (lora.cc), deterministic per shape.
bool sparseExpandPays(const KernelSet& ks, int64_t rank, int64_t out, int64_t slots);

}  // namespace le
