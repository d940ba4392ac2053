// 8-lane AVX2 + FMA + F16C vectors.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "scalar_convert.h"

namespace {
namespace simd {

constexpr int W = 8;
typedef __m256 V;

inline V zero() { return _mm256_setzero_ps(); }
inline V set1(float a) { return _mm256_set1_ps(a); }
inline V load(const float* p) { return _mm256_loadu_ps(p); }
inline void store(float* p, V v) { _mm256_storeu_ps(p, v); }
inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
inline V mul(V a, V b) { return _mm256_mul_ps(a, b); }
inline V add(V a, V b) { return _mm256_add_ps(a, b); }
inline V div(V a, V b) { return _mm256_div_ps(a, b); }
inline V max(V a, V b) { return _mm256_max_ps(a, b); }
inline float hmax(V v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}
// e^x to ~2 ulp: x = n·ln2 + r, |r| ≤ ln2/2, a degree-6 polynomial for e^r (the classic Cephes
// expf coefficients), 2^n built in the exponent bits. Clamped to [-87.3, 88]; NaN stays NaN.
inline V exp(V x) {
  x = _mm256_max_ps(_mm256_set1_ps(-87.33654f), x);
  x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);
  const V n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  V r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  V p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
inline float sum(V v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// The four sums of a, b, c, d (a transposing reduction: cheaper than four separate ones).
inline void sum4(V a, V b, V c, V d, float* out) {
  const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
}
inline V loadBf16(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline V loadF16(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

struct Nf4Table {
  __m256 lo, hi;  // codes 0..7 and 8..15, already scaled
};
inline Nf4Table nf4Table(const float* quantMap, float scale) {
  const __m256 s = _mm256_set1_ps(scale);
  return {_mm256_mul_ps(_mm256_loadu_ps(quantMap), s), _mm256_mul_ps(_mm256_loadu_ps(quantMap + 8), s)};
}
// 8 codes from 4 bytes: split the nibbles, interleave them back into element order, look up
// both table halves and pick by bit 3 of the code.
inline V loadNf4(const uint8_t* p, const Nf4Table& t) {
  int32_t word;
  std::memcpy(&word, p, sizeof word);
  const __m128i b = _mm_cvtsi32_si128(word);
  const __m128i m = _mm_set1_epi8(0x0f);
  const __m128i codes = _mm_unpacklo_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
  const __m256i idx = _mm256_cvtepu8_epi32(codes);
  const __m256 lo = _mm256_permutevar8x32_ps(t.lo, idx);
  const __m256 hi = _mm256_permutevar8x32_ps(t.hi, idx);
  return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

// NF4 chunks for the GEMV: 4W bytes read as W dword lanes. Nibble j of lane i is element
// 8i + (j ^ 1) of the chunk; shifting by 4 moves to the next nibble (the permutes read the low
// 3 bits, the blend bit 3 moved up to the sign).
typedef __m256i Q;
inline __m256i laneMask(int lanes) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
inline Q loadChunk(const uint8_t* p, int lanes) {
  return lanes == W ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                    : _mm256_maskload_epi32(reinterpret_cast<const int*>(p), laneMask(lanes));
}
inline Q nextNibble(Q q) { return _mm256_srli_epi32(q, 4); }
inline V lookup(Q q, const Nf4Table& t) {
  return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t.lo, q), _mm256_permutevar8x32_ps(t.hi, q), _mm256_castsi256_ps(_mm256_slli_epi32(q, 28)));
}

struct LaneBlocks {
  __m256i idx;
};
inline LaneBlocks laneBlocks(int64_t blocksize) {
  alignas(32) int32_t v[W];
  for (int i = 0; i < W; i++) v[i] = static_cast<int32_t>((8 * i) / blocksize);
  return {_mm256_load_si256(reinterpret_cast<const __m256i*>(v))};
}
inline V laneScales(const float* blocks, int count, const LaneBlocks& lb) {
  if (count == 1) return _mm256_set1_ps(*blocks);
  return _mm256_permutevar8x32_ps(_mm256_maskload_ps(blocks, laneMask(count)), lb.idx);
}

// The sparse LoRA expand's t rows as lookup tables read through u8 index vectors (W lanes): up
// to 16 entries in registers (a permute, or two and a blend), more through a gather. Tables are
// made from max(rank, 64) floats, zero past rank.
typedef __m256i LutIdx;
inline LutIdx lutIndex(const uint8_t* idx) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(idx))); }
struct Lut8 {
  __m256 a;
  static Lut8 make(const float* t) { return {_mm256_loadu_ps(t)}; }
  V at(LutIdx i) const { return _mm256_permutevar8x32_ps(a, i); }
};
struct Lut16 {
  __m256 a, b;
  static Lut16 make(const float* t) { return {_mm256_loadu_ps(t), _mm256_loadu_ps(t + 8)}; }
  // Bit 3 of the index picks the half: moved to the sign bit for blendv.
  V at(LutIdx i) const {
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(a, i), _mm256_permutevar8x32_ps(b, i), _mm256_castsi256_ps(_mm256_slli_epi32(i, 28)));
  }
};
struct LutGather {
  const float* p;
  static LutGather make(const float* t) { return {t}; }
  V at(LutIdx i) const { return _mm256_i32gather_ps(p, i, 4); }
};
template <class F>
inline void withLutType(int64_t rank, F&& f) {
  if (rank <= 8) return f(Lut8{});
  if (rank <= 16) return f(Lut16{});
  return f(LutGather{});
}

}  // namespace simd
}  // namespace
