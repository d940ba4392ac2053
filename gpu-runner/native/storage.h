// Native-side weights, LoRA stacks and VeRA projections: 64-byte aligned copies of the caller's
// arrays.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
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

// LoRI-style sparse B in a sliced-ELL layout, for the expand along output columns: outputs in
// blocks of kSparseLanes, each block padded to its densest row's non-zero count ("slots"). Slot s
// of block b holds, per lane, one rank index (u8) and its value (padding: index 0, value 0), so a
// slot is one vector FMA with the t values looked up by index: no scatter, no reduction, and
// the sum per output runs in increasing rank order like the dense expand's.
struct SparseNative {
  DType dtype = DType::F32;  // of the values: F32 or BF16
  int64_t rank = 0;
  int64_t out = 0;
  Buffer slotStart;  // int64 [blocks + 1]
  Buffer idx;        // u8 [slots, kSparseLanes]
  Buffer val;        // f32 / bf16 [slots, kSparseLanes]

  size_t bytes() const { return slotStart.bytes() + idx.bytes() + val.bytes(); }
  void release() {
    slotStart.reset();
    idx.reset();
    val.reset();
  }
  SparseView view() const { return {dtype, rank, out, slotStart.as<int64_t>(), idx.as<uint8_t>(), val.as<void>()}; }
};

// VeRA's shared projections, stored once for every module and adapter that uses them: vera_A
// transposed, At [maxIn, rank] (a module's A_s[:, :in]ᵀ is then the leading `in` rows), and
// vera_B transposed, Bt [rank, maxOut] (a module's B_s[:out]ᵀ is the leading `out` columns).
struct VeraProjNative {
  int64_t rank = 0;
  int64_t maxIn = 0;
  int64_t maxOut = 0;
  WeightNative At;
  WeightNative Bt;

  size_t bytes() const { return At.bytes() + Bt.bytes(); }
};

// What a projection handle owns: a share of the projection (modules hold shares too, so a
// released projection stays alive until its last module goes).
struct VeraProjRef {
  std::shared_ptr<const VeraProjNative> proj;
  size_t bytes_ = 0;
  bool released = false;

  size_t bytes() const { return bytes_; }
  void release() {
    proj.reset();
    released = true;
  }
};

enum class LoraLayout { Dense, Sparse, Vera };

// One module's LoRA stack. Dense: y = rowScale ⊙ y + B (A x) with A [rank, in] as given and B
// stored transposed as Bt [rank, out]. Sparse: the same with B in `sparse`. Vera: t = A_s x
// once, then y += Σ_k λ_b,k ⊙ (B_s (λ_d,k ⊙ t)) for each of `terms` scale pairs (mix weights
// folded into λ_b by the caller).
struct LoraNative {
  LoraLayout layout = LoraLayout::Dense;
  int64_t rank = 0;
  int64_t out = 0;
  int64_t in = 0;
  WeightNative A;
  WeightNative Bt;
  SparseNative sparse;
  Buffer rowScale;  // empty when absent
  std::shared_ptr<const VeraProjNative> proj;
  int64_t terms = 0;
  Buffer lambdaB;  // f32 [terms, out]
  Buffer lambdaD;  // f32 [terms, rank]
  bool released = false;

  // Projection bytes are the projection handle's, not counted here.
  size_t bytes() const { return A.bytes() + Bt.bytes() + sparse.bytes() + rowScale.bytes() + lambdaB.bytes() + lambdaD.bytes(); }
  void release() {
    A.release();
    Bt.release();
    sparse.release();
    rowScale.reset();
    proj.reset();
    lambdaB.reset();
    lambdaD.reset();
    released = true;
  }
  const float* scale() const { return rowScale.bytes() ? rowScale.as<float>() : nullptr; }
};

}  // namespace le
