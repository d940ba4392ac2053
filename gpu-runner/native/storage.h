// Native-side weights and LoRA stacks: 64-byte aligned copies of the caller's arrays.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "kernels/kernels.h"

namespace le {

class Buffer {
 public:
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { reset(); }

  void allocate(size_t bytes) {
    reset();
    const size_t rounded = (bytes + 63) / 64 * 64;
    p_ = rounded ? std::aligned_alloc(64, rounded) : nullptr;
    if (rounded && !p_) throw std::bad_alloc();
    bytes_ = bytes;
  }
  void reset() {
    std::free(p_);
    p_ = nullptr;
    bytes_ = 0;
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

struct WeightNative {
  DType dtype = DType::F32;
  int64_t out = 0;
  int64_t in = 0;
  Buffer data;
  Buffer absmax;  // nf4
  float quantMap[16] = {};
  int64_t blocksize = 0;
  bool released = false;

  size_t bytes() const { return data.bytes() + absmax.bytes(); }
  void release() {
    data.reset();
    absmax.reset();
    released = true;
  }
  WeightView view() const { return {dtype, out, in, data.as<void>(), absmax.as<float>(), quantMap, blocksize}; }
};

// y = rowScale ⊙ y + B (A x): A [rank, in] as given, B stored transposed as Bt [rank, out].
struct LoraNative {
  int64_t rank = 0;
  int64_t out = 0;
  int64_t in = 0;
  WeightNative A;
  WeightNative Bt;
  Buffer rowScale;  // empty when absent
  bool released = false;

  size_t bytes() const { return A.bytes() + Bt.bytes() + rowScale.bytes(); }
  void release() {
    A.release();
    Bt.release();
    rowScale.reset();
    released = true;
  }
  const float* scale() const { return rowScale.bytes() ? rowScale.as<float>() : nullptr; }
};

}  // namespace le
