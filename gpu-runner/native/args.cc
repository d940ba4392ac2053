#include "args.h"

#include <cmath>

namespace le {
namespace {

template <class T>
Span<T> typedArg(const Napi::Value& v, const char* what, napi_typedarray_type type, const char* typeName) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throwType(v.Env(), std::string(what) + " must be a " + typeName);
  auto a = v.As<Napi::TypedArrayOf<T>>();
  return {a.Data(), a.ElementLength()};
}

}  // namespace

void throwType(Napi::Env env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }
void throwRange(Napi::Env env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

int64_t intArg(const Napi::Value& v, const char* what, int64_t lo, int64_t hi) {
  if (!v.IsNumber()) throwType(v.Env(), std::string(what) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
    throwRange(v.Env(), std::string(what) + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                            v.ToString().Utf8Value());
  }
  return static_cast<int64_t>(d);
}

double numberArg(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throwType(v.Env(), std::string(what) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) throwRange(v.Env(), std::string(what) + " must be finite");
  return d;
}

Span<float> f32Arg(const Napi::Value& v, const char* what) { return typedArg<float>(v, what, napi_float32_array, "Float32Array"); }
Span<int32_t> i32Arg(const Napi::Value& v, const char* what) { return typedArg<int32_t>(v, what, napi_int32_array, "Int32Array"); }
Span<uint16_t> u16Arg(const Napi::Value& v, const char* what) { return typedArg<uint16_t>(v, what, napi_uint16_array, "Uint16Array"); }
Span<uint8_t> u8Arg(const Napi::Value& v, const char* what) { return typedArg<uint8_t>(v, what, napi_uint8_array, "Uint8Array"); }

int64_t product(Napi::Env env, const char* what, int64_t a, int64_t b, int64_t c) {
  int64_t ab, abc;
  if (__builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, c, &abc) || abc > kMaxElements)
    throwRange(env, std::string(what) + " is too large");
  return abc;
}

void noOverlap(Napi::Env env, const void* a, size_t aBytes, const char* aName, const void* b, size_t bBytes, const char* bName,
               bool allowSame) {
  if (aBytes == 0 || bBytes == 0) return;
  const auto pa = reinterpret_cast<uintptr_t>(a);
  const auto pb = reinterpret_cast<uintptr_t>(b);
  if (allowSame && pa == pb) return;
  if (pa < pb + bBytes && pb < pa + aBytes)
    throwRange(env, std::string(aName) + " and " + bName + " overlap in memory" + (allowSame ? " (only exact aliasing is allowed)" : ""));
}

}  // namespace le
