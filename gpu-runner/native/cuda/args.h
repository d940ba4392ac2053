// Argument checks of the CUDA module, by the same rules (and messages) as the cpu-native addon's
// args.cc: wrong kinds throw TypeError, wrong sizes RangeError, before any device work. Kept as a
// copy inside cuda/ so the two modules build and evolve independently.
#pragma once
#include <napi.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

namespace le {
namespace cudaargs {

template <class T>
struct Span {
  T* data;
  size_t len;
  size_t bytes() const { return len * sizeof(T); }
};

constexpr int64_t kMaxElements = int64_t{1} << 46;
constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;

[[noreturn]] inline void throwType(Napi::Env env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }
[[noreturn]] inline void throwRange(Napi::Env env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

inline int64_t intArg(const Napi::Value& v, const char* what, int64_t lo, int64_t hi) {
  if (!v.IsNumber()) throwType(v.Env(), std::string(what) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
    throwRange(v.Env(), std::string(what) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                            v.ToString().Utf8Value());
  }
  return static_cast<int64_t>(d);
}

inline double numberArg(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throwType(v.Env(), std::string(what) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throwRange(v.Env(), std::string(what) + " must be finite");
  return d;
}

template <class T>
Span<T> typedArg(const Napi::Value& v, const char* what, napi_typedarray_type type, const char* typeName) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) throwType(v.Env(), std::string(what) + " must be a " + typeName);
  auto a = v.As<Napi::TypedArrayOf<T>>();
  return {a.Data(), a.ElementLength()};
}

inline Span<float> f32Arg(const Napi::Value& v, const char* what) { return typedArg<float>(v, what, napi_float32_array, "Float32Array"); }
inline Span<int32_t> i32Arg(const Napi::Value& v, const char* what) { return typedArg<int32_t>(v, what, napi_int32_array, "Int32Array"); }
inline Span<uint16_t> u16Arg(const Napi::Value& v, const char* what) {
  return typedArg<uint16_t>(v, what, napi_uint16_array, "Uint16Array");
}
inline Span<uint8_t> u8Arg(const Napi::Value& v, const char* what) { return typedArg<uint8_t>(v, what, napi_uint8_array, "Uint8Array"); }

// a · b (· c) with an overflow check against kMaxElements.
inline int64_t product(Napi::Env env, const char* what, int64_t a, int64_t b, int64_t c = 1) {
  int64_t ab, abc;
  if (__builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, c, &abc) || abc > kMaxElements)
    throwRange(env, std::string(what) + " is too large");
  return abc;
}

template <class T>
void needAtLeast(Napi::Env env, const Span<T>& s, int64_t count, const char* what) {
  if (static_cast<int64_t>(s.len) < count)
    throwRange(env, std::string(what) + " holds " + std::to_string(s.len) + " values but needs at least " + std::to_string(count));
}

template <class T>
void needExactly(Napi::Env env, const Span<T>& s, int64_t count, const char* what) {
  if (static_cast<int64_t>(s.len) != count)
    throwRange(env, std::string(what) + " holds " + std::to_string(s.len) + " values but must hold exactly " + std::to_string(count));
}

// Throws unless the byte ranges are disjoint (or, with allowSame, start at the same address).
inline void noOverlap(Napi::Env env, const void* a, size_t aBytes, const char* aName, const void* b, size_t bBytes, const char* bName,
                      bool allowSame = false) {
  if (aBytes == 0 || bBytes == 0) return;
  const auto pa = reinterpret_cast<uintptr_t>(a);
  const auto pb = reinterpret_cast<uintptr_t>(b);
  if (allowSame && pa == pb) return;
  if (pa < pb + bBytes && pb < pa + aBytes)
    throwRange(env, std::string(aName) + " and " + bName + " overlap in memory" + (allowSame ? " (only exact aliasing is allowed)" : ""));
}

inline Napi::Object requireObject(const Napi::Value& v, const char* what) {
  if (!v.IsObject() || v.IsTypedArray() || v.IsArray()) throwType(v.Env(), std::string(what) + " must be an object");
  return v.As<Napi::Object>();
}

inline std::string stringArg(const Napi::Value& v, const char* what) {
  if (!v.IsString()) throwType(v.Env(), std::string(what) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

}  // namespace cudaargs
}  // namespace le
