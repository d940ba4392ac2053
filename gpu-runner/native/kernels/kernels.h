// The serial compute kernels, one set per instruction set (scalar, AVX2, AVX-512), chosen at run
// time. Only plain data crosses this boundary: the ISA translation units are compiled with their
// own -m flags and must share no inline code with the rest of the addon (see binding.gyp).
#pragma once
#include <cstddef>
#include <cstdint>

namespace le {

enum class DType : int { F32 = 0, BF16 = 1, F16 = 2, NF4 = 3 };

// A read-only view of a weight [out, in] in its storage format.
struct WeightView {
  DType dtype;
  int64_t out;
  int64_t in;
  const void* data;
  // NF4 only: one scale per `blocksize` elements of the flattened weight, and the 16-entry code.
  const float* absmax;
  const float* quantMap;
  int64_t blocksize;
};

// A LoRI-style sparse B (storage.h: SparseNative): outputs in blocks of kSparseLanes; block b's
// slots are [slotStart[b], slotStart[b + 1]), slot s holds kSparseLanes rank indices at
// idx + s·kSparseLanes and as many values (f32 or bf16) at the same offset of val.
constexpr int kSparseLanes = 16;
struct SparseView {
  DType dtype;
  int64_t rank;  // ≤ 256 (u8 indices)
  int64_t out;
  const int64_t* slotStart;
  const uint8_t* idx;
  const void* val;
};

// Rows a single gemv call handles at once (its register tile height).
constexpr int kGemvRows = 4;

struct KernelSet {
  const char* name;
  int lanes;
  // y[i][j] for i < m (m ≤ kGemvRows), j in [j0, j1): dot products straight from the weight's
  // storage. NF4 only when `in` is a multiple of blocksize, a power of two ≥ 8. `prep` is what
  // gemvPrepare wrote for these rows (gemvPrepSize(w, m) floats; none for other dtypes).
  void (*gemv)(const WeightView& w, const float* const* x, float* const* y, int m, int64_t j0, int64_t j1, const float* prep);
  int64_t (*gemvPrepSize)(const WeightView& w, int m);
  void (*gemvPrepare)(const WeightView& w, const float* const* x, int m, float* prep);
  // Dequantizes/converts rows [r0, r0 + rows) × columns [k0, k0 + kc) into dst (row stride kc).
  void (*convert)(const WeightView& w, int64_t r0, int64_t rows, int64_t k0, int64_t kc, float* dst);
  // acc[i·ldacc + j] += Σ_k x[i][xoff + k] · w[j·ldw + k] for i < m, j < nr, k < kc; kc must be a
  // multiple of 16 (rows zero-padded by the caller).
  void (*gemm)(const float* const* x, int64_t xoff, int m, const float* w, int64_t ldw, int nr, int64_t kc, float* acc, int64_t ldacc);
  // The LoRA expand for m rows: y[i][j] = rowScale[j]·y[i][j] + Σ_r t[i][r]·bt[r][j] for j in
  // [j0, j1), with bt = Bᵀ [rank, out] (f32 or bf16); rowScale may be null (1).
  void (*loraExpand)(const WeightView& bt, const float* const* t, float* const* y, int m, int64_t j0, int64_t j1, const float* rowScale);
  // The same for a sparse B: j0 a multiple of kSparseLanes.
  void (*loraExpandSparse)(const SparseView& b, const float* const* t, float* const* y, int m, int64_t j0, int64_t j1,
                           const float* rowScale);
  // Rows times a row-major matrix, for VeRA's shared projections (rows of every adapter on one
  // projection together): y[i][j] += (os[i] ? os[i][j] : 1) · Σ_k a[i][k]·b[k][j] for i < m,
  // j in [j0, j1), k < b.out, with b [b.out rows, row stride b.in] (f32 or bf16). os may be null.
  void (*rowsTimes)(const WeightView& b, const float* const* a, float* const* y, const float* const* os, int m, int64_t j0, int64_t j1);
  // gate = silu(gate) · up for n elements.
  void (*siluMul)(float* gate, const float* up, int64_t n);
  // One query head over `len` keys / values (rows `stride` floats apart, `hd` used): out =
  // softmax(q·Kᵀ·scale) V. `p` is scratch for len floats.
  void (*attendHead)(const float* q, const float* k, const float* v, int64_t len, int64_t stride, int64_t hd, float scale, float* out,
                     float* p);
};

extern const KernelSet kScalarKernels;
#if defined(__x86_64__) || defined(_M_X64)
extern const KernelSet kAvx2Kernels;
extern const KernelSet kAvx512Kernels;
#endif

}  // namespace le
