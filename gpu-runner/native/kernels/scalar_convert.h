// Exact bf16 / f16 → f32 conversions for single elements (tails and the portable path).
// Static inline on purpose: each ISA translation unit gets its own private copy.
#pragma once
#include <cstdint>
#include <cstring>

namespace {

inline float bitsToF32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline float bf16ToF32(uint16_t h) { return bitsToF32(static_cast<uint32_t>(h) << 16); }

inline float f16ToF32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bitsToF32(sign | 0x7f800000u | (mant << 13));  // inf / NaN (payload kept)
  if (exp == 0) {
    if (mant == 0) return bitsToF32(sign);
    // Subnormal: shift the mantissa up until its leading one becomes the implicit bit.
    exp = 113;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      exp--;
    }
    return bitsToF32(sign | (exp << 23) | ((mant & 0x3ffu) << 13));
  }
  return bitsToF32(sign | ((exp + 112) << 23) | (mant << 13));
}

// NF4 code of flattened element f: even elements sit in the high nibble.
inline unsigned nf4Code(const uint8_t* q, int64_t f) {
  const uint8_t b = q[f >> 1];
  return (f & 1) ? (b & 0x0fu) : (b >> 4);
}

}  // namespace
