// The multi-LoRA op: rows grouped by slot (segments and scattered rows alike, gathered through
// row pointers), shrink T = X Aᵀ per group, then expand y = rowScale ⊙ y + T Bᵀ.
#pragma once
#include <cstdint>
#include <vector>

#include "storage.h"

namespace le {

// Inputs are validated by the caller: slots[i] < handles.size(), all handles alive and of
// matching shape, x [n, in] and y [n, out].
void loraApply(float* y, const float* x, int64_t n, const int32_t* slots, const std::vector<const LoraNative*>& handles);

}  // namespace le
