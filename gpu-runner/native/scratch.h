// Per-thread scratch memory that grows and is reused (kernels run on pool threads that live for
// the whole process, so nothing is allocated per call once warm). 64-byte aligned: vectors
// loaded from it never straddle cache lines.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>

namespace le {

class Scratch {
 public:
  float* floats(size_t n) {
    if (n > cap_) {
      const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      void* p = std::aligned_alloc(64, bytes);
      if (!p) throw std::bad_alloc();
      buf_.reset(static_cast<float*>(p));
      cap_ = n;
    }
    return buf_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> buf_;
  size_t cap_ = 0;
};

// Distinct slots so nested uses in one task do not collide.
enum ScratchSlot { kScratchAcc, kScratchWeights, kScratchScores, kScratchX, kScratchPrep, kScratchCount };
Scratch& scratch(ScratchSlot slot);

}  // namespace le
