// 16-lane AVX-512 (F, BW, VL, DQ) vectors.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "scalar_convert.h"

namespace {
namespace simd {

constexpr int W = 16;
typedef __m512 V;

inline V zero() { return _mm512_setzero_ps(); }
inline V set1(float a) { return _mm512_set1_ps(a); }
inline V load(const float* p) { return _mm512_loadu_ps(p); }
inline void store(float* p, V v) { _mm512_storeu_ps(p, v); }
inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
inline V mul(V a, V b) { return _mm512_mul_ps(a, b); }
inline V add(V a, V b) { return _mm512_add_ps(a, b); }
inline V div(V a, V b) { return _mm512_div_ps(a, b); }
inline V max(V a, V b) { return _mm512_max_ps(a, b); }
inline float hmax(V v) { return _mm512_reduce_max_ps(v); }
// e^x to ~2 ulp: x = n·ln2 + r, |r| ≤ ln2/2, a degree-6 polynomial for e^r (the classic Cephes
// expf coefficients), 2^n built in the exponent bits. Clamped to [-87.3, 88] (no overflow, no
// subnormals); NaN stays NaN (max/min return their second operand on NaN).
inline V exp(V x) {
  x = _mm512_max_ps(_mm512_set1_ps(-87.33654f), x);
  x = _mm512_min_ps(_mm512_set1_ps(88.0f), x);
  const V n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  V r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  V p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}
inline float sum(V v) {
  __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// The four sums of a, b, c, d (a transposing reduction: cheaper than four separate ones).
inline void sum4(V a, V b, V c, V d, float* out) {
  const __m256 a8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
  const __m256 b8 = _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1));
  const __m256 c8 = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
  const __m256 d8 = _mm256_add_ps(_mm512_castps512_ps256(d), _mm512_extractf32x8_ps(d, 1));
  const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a8, b8), _mm256_hadd_ps(c8, d8));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1)));
}
inline V loadBf16(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline V loadF16(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }

struct Nf4Table {
  __m512 t;  // all 16 codes, already scaled: one vpermps decodes 16 weights
};
inline Nf4Table nf4Table(const float* quantMap, float scale) {
  return {_mm512_mul_ps(_mm512_loadu_ps(quantMap), _mm512_set1_ps(scale))};
}
// 16 codes from 8 bytes: split the nibbles and interleave them back into element order.
inline V loadNf4(const uint8_t* p, const Nf4Table& t) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(0x0f);
  const __m128i codes = _mm_unpacklo_epi8(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
  return _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(codes), t.t);
}

// NF4 chunks for the GEMV: 4W bytes read as W dword lanes. Nibble j of lane i is element
// 8i + (j ^ 1) of the chunk; shifting the whole register by 4 moves to the next nibble, and the
// table lookup only reads the low 4 bits, so no masking or byte shuffling is needed.
typedef __m512i Q;
inline Q loadChunk(const uint8_t* p, int lanes) {
  return lanes == W ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi32(static_cast<__mmask16>((1u << lanes) - 1), p);
}
inline Q nextNibble(Q q) { return _mm512_srli_epi32(q, 4); }
inline V lookup(Q q, const Nf4Table& t) { return _mm512_permutexvar_ps(q, t.t); }

// Which of the chunk's blocks each lane's 8 elements belong to (blocksize ≥ 8).
struct LaneBlocks {
  __m512i idx;
};
inline LaneBlocks laneBlocks(int64_t blocksize) {
  alignas(64) int32_t v[W];
  for (int i = 0; i < W; i++) v[i] = static_cast<int32_t>((8 * i) / blocksize);
  return {_mm512_load_si512(v)};
}
// Per-lane absmax from the `count` (≤ W) blocks the chunk covers.
inline V laneScales(const float* blocks, int count, const LaneBlocks& lb) {
  if (count == 1) return _mm512_set1_ps(*blocks);
  return _mm512_permutexvar_ps(lb.idx, _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << count) - 1), blocks));
}

// The sparse LoRA expand's t rows as lookup tables read through u8 index vectors (W lanes): up
// to 64 entries live in registers (one permute, or two and a blend), more go through a gather.
// An index vector is expanded once and looked up in several rows' tables. `withLutType` calls f
// with a value of the table type that fits `rank`, so the kernel is compiled per type. Tables
// are made from max(rank, 64) floats, zero past rank.
typedef __m512i LutIdx;
inline LutIdx lutIndex(const uint8_t* idx) { return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(idx))); }
struct Lut16 {
  __m512 a;
  static Lut16 make(const float* t) { return {_mm512_loadu_ps(t)}; }
  V at(LutIdx i) const { return _mm512_permutexvar_ps(i, a); }
};
struct Lut32 {
  __m512 a, b;
  static Lut32 make(const float* t) { return {_mm512_loadu_ps(t), _mm512_loadu_ps(t + 16)}; }
  V at(LutIdx i) const { return _mm512_permutex2var_ps(a, i, b); }
};
struct Lut64 {
  __m512 a, b, c, d;
  static Lut64 make(const float* t) {
    return {_mm512_loadu_ps(t), _mm512_loadu_ps(t + 16), _mm512_loadu_ps(t + 32), _mm512_loadu_ps(t + 48)};
  }
  V at(LutIdx i) const {
    const __m512 lo = _mm512_permutex2var_ps(a, i, b);
    const __m512 hi = _mm512_permutex2var_ps(c, i, d);
    return _mm512_mask_blend_ps(_mm512_test_epi32_mask(i, _mm512_set1_epi32(32)), lo, hi);
  }
};
struct LutGather {
  const float* p;
  static LutGather make(const float* t) { return {t}; }
  V at(LutIdx i) const { return _mm512_i32gather_ps(i, p, 4); }
};
template <class F>
inline void withLutType(int64_t rank, F&& f) {
  if (rank <= 16) return f(Lut16{});
  if (rank <= 32) return f(Lut32{});
  if (rank <= 64) return f(Lut64{});
  return f(LutGather{});
}

}  // namespace simd
}  // namespace
