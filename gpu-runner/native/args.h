// Argument checking for the N-API surface: every value from JavaScript is type-, range- and
// length-checked here, and a failure throws a JavaScript TypeError / RangeError instead of
// reaching a kernel.
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace le {

template <class T>
struct Span {
  T* data;
  size_t len;
  size_t bytes() const { return len * sizeof(T); }
};

[[noreturn]] void throwType(Napi::Env env, const std::string& msg);
[[noreturn]] void throwRange(Napi::Env env, const std::string& msg);

// Largest element count an array argument may describe (well inside size_t and double).
constexpr int64_t kMaxElements = int64_t{1} << 46;
constexpr int64_t kMaxDim = (int64_t{1} << 31) - 1;

// An integer-valued number in [lo, hi].
int64_t intArg(const Napi::Value& v, const char* what, int64_t lo, int64_t hi);
// A finite number.
double numberArg(const Napi::Value& v, const char* what);

Span<float> f32Arg(const Napi::Value& v, const char* what);
Span<int32_t> i32Arg(const Napi::Value& v, const char* what);
Span<uint16_t> u16Arg(const Napi::Value& v, const char* what);
Span<uint8_t> u8Arg(const Napi::Value& v, const char* what);

// a · b (· c) with an overflow check against kMaxElements.
int64_t product(Napi::Env env, const char* what, int64_t a, int64_t b, int64_t c = 1);

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
void noOverlap(Napi::Env env, const void* a, size_t aBytes, const char* aName, const void* b, size_t bBytes, const char* bName,
               bool allowSame = false);

}  // namespace le
