// Filling LoRA factors into native storage: dense (optionally transposed, f32 or bf16) and the
// sliced-ELL sparse B. Header-only: included by handles.cc alone (binding.gyp lists the sources).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "args.h"
#include "storage.h"

namespace le {

inline uint16_t f32ToBf16(float v) {
  uint32_t x;
  std::memcpy(&x, &v, sizeof x);
  if ((x & 0x7f800000u) == 0x7f800000u && (x & 0x7fffffu)) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);  // round to nearest even
}

// Fills one factor as a weight [rows, cols] in the requested storage precision; with
// `transpose`, src is [cols, rows] and is stored transposed.
inline void fillFactor(WeightNative& w, DType dtype, int64_t rows, int64_t cols, const Span<float>& src, bool transpose) {
  w.dtype = dtype;
  w.out = rows;
  w.in = cols;
  auto at = [&](int64_t r, int64_t c) { return transpose ? src.data[c * rows + r] : src.data[r * cols + c]; };
  if (dtype == DType::F32) {
    w.data.allocate(src.len * sizeof(float));
    float* d = w.data.as<float>();
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++) d[r * cols + c] = at(r, c);
    return;
  }
  w.data.allocate(src.len * sizeof(uint16_t));
  uint16_t* d = w.data.as<uint16_t>();
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) d[r * cols + c] = f32ToBf16(at(r, c));
}

// Exact zeros of B [out, rank] (+0 and −0).
inline int64_t countZeros(const Span<float>& b) {
  int64_t z = 0;
  for (size_t i = 0; i < b.len; i++) z += b.data[i] == 0.0f;
  return z;
}

// Padded slots of the sliced-ELL form of B [out, rank]: Σ over blocks of kSparseLanes outputs of
// the block's largest non-zero count per output.
inline int64_t sparseSlots(const Span<float>& b, int64_t out, int64_t rank) {
  int64_t slots = 0;
  for (int64_t j0 = 0; j0 < out; j0 += kSparseLanes) {
    int64_t most = 0;
    for (int64_t j = j0; j < out && j < j0 + kSparseLanes; j++) {
      int64_t nz = 0;
      for (int64_t r = 0; r < rank; r++) nz += b.data[j * rank + r] != 0.0f;
      most = nz > most ? nz : most;
    }
    slots += most;
  }
  return slots;
}

// B [out, rank] (rank ≤ 256) in the sliced-ELL layout of SparseNative; padding entries are
// index 0, value 0 (they add an exact zero).
inline void fillSparse(SparseNative& s, DType dtype, int64_t out, int64_t rank, const Span<float>& b) {
  constexpr int64_t L = kSparseLanes;
  const int64_t blocks = (out + L - 1) / L;
  s.dtype = dtype;
  s.rank = rank;
  s.out = out;
  s.slotStart.allocate(static_cast<size_t>(blocks + 1) * sizeof(int64_t));
  int64_t* start = s.slotStart.as<int64_t>();
  start[0] = 0;
  for (int64_t blk = 0; blk < blocks; blk++) {
    Span<float> rows{b.data + blk * L * rank, static_cast<size_t>(std::min(L, out - blk * L) * rank)};
    start[blk + 1] = start[blk] + sparseSlots(rows, std::min(L, out - blk * L), rank);
  }
  const size_t cells = static_cast<size_t>(start[blocks] * L);
  const size_t es = dtype == DType::F32 ? sizeof(float) : sizeof(uint16_t);
  s.idx.allocate(cells);
  s.val.allocate(cells * es);
  if (cells) {
    std::memset(s.idx.as<void>(), 0, cells);
    std::memset(s.val.as<void>(), 0, cells * es);
  }
  uint8_t* idx = s.idx.as<uint8_t>();
  for (int64_t j = 0; j < out; j++) {
    int64_t cell = start[j / L] * L + j % L;
    for (int64_t r = 0; r < rank; r++) {
      const float v = b.data[j * rank + r];
      if (v == 0.0f) continue;
      idx[cell] = static_cast<uint8_t>(r);
      if (dtype == DType::F32) {
        s.val.as<float>()[cell] = v;
      } else {
        s.val.as<uint16_t>()[cell] = f32ToBf16(v);
      }
      cell += L;
    }
  }
}

}  // namespace le
