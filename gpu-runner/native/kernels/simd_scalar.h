// Portable 4-lane vectors (GCC/Clang vector extensions): SSE2 on baseline x86-64, NEON on arm64.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "scalar_convert.h"

namespace {
namespace simd {

constexpr int W = 4;
typedef float V __attribute__((vector_size(16)));

inline V zero() { return V{0, 0, 0, 0}; }
inline V set1(float a) { return V{a, a, a, a}; }
inline V load(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, V v) { std::memcpy(p, &v, sizeof v); }
inline V fma(V a, V b, V c) { return a * b + c; }
inline V mul(V a, V b) { return a * b; }
inline V add(V a, V b) { return a + b; }
inline V div(V a, V b) { return a / b; }
inline V max(V a, V b) { return V{a[0] > b[0] ? a[0] : b[0], a[1] > b[1] ? a[1] : b[1], a[2] > b[2] ? a[2] : b[2], a[3] > b[3] ? a[3] : b[3]}; }
inline float hmax(V v) {
  const float a = v[0] > v[1] ? v[0] : v[1];
  const float b = v[2] > v[3] ? v[2] : v[3];
  return a > b ? a : b;
}
inline V exp(V x) { return V{std::exp(x[0]), std::exp(x[1]), std::exp(x[2]), std::exp(x[3])}; }
inline float sum(V v) { return (v[0] + v[1]) + (v[2] + v[3]); }
inline void sum4(V a, V b, V c, V d, float* out) {
  out[0] = sum(a);
  out[1] = sum(b);
  out[2] = sum(c);
  out[3] = sum(d);
}
inline V loadBf16(const uint16_t* p) { return V{bf16ToF32(p[0]), bf16ToF32(p[1]), bf16ToF32(p[2]), bf16ToF32(p[3])}; }
inline V loadF16(const uint16_t* p) { return V{f16ToF32(p[0]), f16ToF32(p[1]), f16ToF32(p[2]), f16ToF32(p[3])}; }

struct Nf4Table {
  float t[16];
};
inline Nf4Table nf4Table(const float* quantMap, float scale) {
  Nf4Table t;
  for (int i = 0; i < 16; i++) t.t[i] = quantMap[i] * scale;
  return t;
}
// W codes from W/2 bytes, the first element in the high nibble.
inline V loadNf4(const uint8_t* p, const Nf4Table& t) {
  return V{t.t[p[0] >> 4], t.t[p[0] & 15], t.t[p[1] >> 4], t.t[p[1] & 15]};
}

// NF4 chunks for the GEMV: 4W bytes as W little-endian words; nibble j of lane i is element
// 8i + (j ^ 1) of the chunk.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "NF4 chunk decoding assumes a little-endian CPU");
typedef uint32_t Q __attribute__((vector_size(16)));
inline Q loadChunk(const uint8_t* p, int lanes) {
  Q q = {0, 0, 0, 0};
  std::memcpy(&q, p, static_cast<size_t>(lanes) * 4);
  return q;
}
inline Q nextNibble(Q q) { return q >> 4; }
inline V lookup(Q q, const Nf4Table& t) { return V{t.t[q[0] & 15], t.t[q[1] & 15], t.t[q[2] & 15], t.t[q[3] & 15]}; }

struct LaneBlocks {
  int idx[W];
};
inline LaneBlocks laneBlocks(int64_t blocksize) {
  LaneBlocks lb;
  for (int i = 0; i < W; i++) lb.idx[i] = static_cast<int>((8 * i) / blocksize);
  return lb;
}
inline V laneScales(const float* blocks, int count, const LaneBlocks& lb) {
  if (count == 1) return set1(*blocks);
  // Lanes past a partial chunk may name blocks beyond `count`: read block 0 for them instead.
  float v[W];
  for (int i = 0; i < W; i++) v[i] = blocks[lb.idx[i] < count ? lb.idx[i] : 0];
  return load(v);
}

// The sparse LoRA expand's t rows as lookup tables (plain indexed loads here).
typedef const uint8_t* LutIdx;
inline LutIdx lutIndex(const uint8_t* idx) { return idx; }
struct LutGather {
  const float* p;
  static LutGather make(const float* t) { return {t}; }
  V at(LutIdx i) const { return V{p[i[0]], p[i[1]], p[i[2]], p[i[3]]}; }
};
template <class F>
inline void withLutType(int64_t, F&& f) {
  f(LutGather{});
}

}  // namespace simd
}  // namespace
