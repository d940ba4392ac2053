// The N-API surface of the cpu-native backend. Every entry point checks its arguments fully
// (args.h) before any kernel runs, and C++ exceptions become JavaScript errors: bad input throws,
// it never aborts the process.
#include <napi.h>

#include <new>
#include <string>
#include <vector>

#include "args.h"
#include "dispatch.h"
#include "handles.h"
#include "lora.h"
#include "matmul.h"
#include "ops.h"
#include "thread_pool.h"

namespace le {
namespace {

using Fn = Napi::Value (*)(const Napi::CallbackInfo&);

template <Fn F>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(info.Env(), "lora-edge native: out of memory");
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string("lora-edge native: ") + e.what());
  }
}

constexpr int64_t kMaxRows = kMaxDim;

// matmul(y, x, n, weight)
Napi::Value matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto y = f32Arg(info[0], "matmul: y");
  const auto x = f32Arg(info[1], "matmul: x");
  const int64_t n = intArg(info[2], "matmul: n", 0, kMaxRows);
  const WeightNative& w = unwrapWeight(info[3], "matmul: weight");
  const int64_t xs = product(env, "matmul: n · in", n, w.in);
  const int64_t ys = product(env, "matmul: n · out", n, w.out);
  needAtLeast(env, x, xs, "matmul: x");
  needAtLeast(env, y, ys, "matmul: y");
  noOverlap(env, y.data, ys * 4, "matmul: y", x.data, xs * 4, "x");
  std::vector<const float*> xr(static_cast<size_t>(n));
  std::vector<float*> yr(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; i++) {
    xr[i] = x.data + i * w.in;
    yr[i] = y.data + i * w.out;
  }
  matmulParallel(w.view(), xr.data(), yr.data(), n);
  return env.Undefined();
}

// lora(y, x, n, slots, handles)
Napi::Value lora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto y = f32Arg(info[0], "lora: y");
  const auto x = f32Arg(info[1], "lora: x");
  const int64_t n = intArg(info[2], "lora: n", 0, kMaxRows);
  const auto slots = i32Arg(info[3], "lora: slots");
  needAtLeast(env, slots, n, "lora: slots");
  if (!info[4].IsArray()) throwType(env, "lora: handles must be an array of LoRA handles");
  const Napi::Array arr = info[4].As<Napi::Array>();
  const uint32_t nh = arr.Length();
  std::vector<const LoraNative*> hs(nh);
  for (uint32_t k = 0; k < nh; k++) {
    const std::string what = "lora: handles[" + std::to_string(k) + "]";
    hs[k] = &unwrapLora(arr.Get(k), what.c_str());
    if (hs[k]->in != hs[0]->in || hs[k]->out != hs[0]->out) {
      throwRange(env, what + " maps " + std::to_string(hs[k]->in) + " → " + std::to_string(hs[k]->out) + " features but handles[0] maps " +
                          std::to_string(hs[0]->in) + " → " + std::to_string(hs[0]->out));
    }
  }
  for (int64_t i = 0; i < n; i++) {
    if (slots.data[i] >= static_cast<int64_t>(nh))
      throwRange(env, "lora: slots[" + std::to_string(i) + "] = " + std::to_string(slots.data[i]) + " but there are " + std::to_string(nh) +
                          " handles");
  }
  if (nh == 0) return env.Undefined();  // every slot is negative: nothing to add
  const int64_t xs = product(env, "lora: n · in", n, hs[0]->in);
  const int64_t ys = product(env, "lora: n · out", n, hs[0]->out);
  needAtLeast(env, x, xs, "lora: x");
  needAtLeast(env, y, ys, "lora: y");
  noOverlap(env, y.data, ys * 4, "lora: y", x.data, xs * 4, "x");
  loraApply(y.data, x.data, n, slots.data, hs);
  return env.Undefined();
}

// rmsnorm(y, x, n, dim, weight, eps)
Napi::Value rmsnorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto y = f32Arg(info[0], "rmsnorm: y");
  const auto x = f32Arg(info[1], "rmsnorm: x");
  const int64_t n = intArg(info[2], "rmsnorm: n", 0, kMaxRows);
  const int64_t dim = intArg(info[3], "rmsnorm: dim", 1, kMaxDim);
  const auto weight = f32Arg(info[4], "rmsnorm: weight");
  const double eps = numberArg(info[5], "rmsnorm: eps");
  if (eps < 0) throwRange(env, "rmsnorm: eps must be ≥ 0");
  const int64_t size = product(env, "rmsnorm: n · dim", n, dim);
  needAtLeast(env, x, size, "rmsnorm: x");
  needAtLeast(env, y, size, "rmsnorm: y");
  needAtLeast(env, weight, dim, "rmsnorm: weight");
  noOverlap(env, y.data, size * 4, "rmsnorm: y", x.data, size * 4, "x", true);
  noOverlap(env, y.data, size * 4, "rmsnorm: y", weight.data, dim * 4, "weight");
  le::rmsnorm(y.data, x.data, n, dim, weight.data, static_cast<float>(eps));
  return env.Undefined();
}

// rope(x, n, heads, headDim, positions, theta)
Napi::Value rope(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto x = f32Arg(info[0], "rope: x");
  const int64_t n = intArg(info[1], "rope: n", 0, kMaxRows);
  const int64_t heads = intArg(info[2], "rope: heads", 1, kMaxDim);
  const int64_t headDim = intArg(info[3], "rope: headDim", 2, kMaxDim);
  if (headDim % 2) throwRange(env, "rope: headDim must be even");
  const auto positions = i32Arg(info[4], "rope: positions");
  const double theta = numberArg(info[5], "rope: theta");
  if (theta <= 0) throwRange(env, "rope: theta must be > 0");
  needAtLeast(env, x, product(env, "rope: n · heads · headDim", n, heads, headDim), "rope: x");
  needAtLeast(env, positions, n, "rope: positions");
  le::rope(x.data, n, heads, headDim, positions.data, theta);
  return env.Undefined();
}

// attention({ out, q, nTokens, kCache, vCache, start, heads, kvHeads, headDim })
Napi::Value attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject() || info[0].IsTypedArray() || info[0].IsArray()) throwType(env, "attention(args): args must be an object");
  const Napi::Object a = info[0].As<Napi::Object>();
  const auto out = f32Arg(a.Get("out"), "attention: out");
  const auto q = f32Arg(a.Get("q"), "attention: q");
  const auto k = f32Arg(a.Get("kCache"), "attention: kCache");
  const auto v = f32Arg(a.Get("vCache"), "attention: vCache");
  AttentionShape s;
  s.nTokens = intArg(a.Get("nTokens"), "attention: nTokens", 0, kMaxRows);
  s.start = intArg(a.Get("start"), "attention: start", 0, kMaxRows);
  s.heads = intArg(a.Get("heads"), "attention: heads", 1, kMaxDim);
  s.kvHeads = intArg(a.Get("kvHeads"), "attention: kvHeads", 1, kMaxDim);
  s.headDim = intArg(a.Get("headDim"), "attention: headDim", 1, kMaxDim);
  if (s.heads % s.kvHeads) throwRange(env, "attention: heads must be a multiple of kvHeads");
  const int64_t qs = product(env, "attention: nTokens · heads · headDim", s.nTokens, s.heads, s.headDim);
  const int64_t cs = product(env, "attention: (start + nTokens) · kvHeads · headDim", s.start + s.nTokens, s.kvHeads, s.headDim);
  needAtLeast(env, q, qs, "attention: q");
  needAtLeast(env, out, qs, "attention: out");
  needAtLeast(env, k, cs, "attention: kCache");
  needAtLeast(env, v, cs, "attention: vCache");
  noOverlap(env, out.data, qs * 4, "attention: out", q.data, qs * 4, "q");
  noOverlap(env, out.data, qs * 4, "attention: out", k.data, cs * 4, "kCache");
  noOverlap(env, out.data, qs * 4, "attention: out", v.data, cs * 4, "vCache");
  le::attention(out.data, q.data, k.data, v.data, s);
  return env.Undefined();
}

// siluMul(gate, up, len)
Napi::Value siluMul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto gate = f32Arg(info[0], "siluMul: gate");
  const auto up = f32Arg(info[1], "siluMul: up");
  const int64_t len = intArg(info[2], "siluMul: len", 0, kMaxElements);
  needAtLeast(env, gate, len, "siluMul: gate");
  needAtLeast(env, up, len, "siluMul: up");
  noOverlap(env, gate.data, len * 4, "siluMul: gate", up.data, len * 4, "up", true);
  le::siluMul(gate.data, up.data, len);
  return env.Undefined();
}

// fuseRows(w, out, in, b, a, r[, src]): w[out, in] = (src ?? w) + b[out, r] · a[r, in].
Napi::Value fuseRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto w = f32Arg(info[0], "fuseRows: w");
  const int64_t out = intArg(info[1], "fuseRows: out", 1, kMaxElements);
  const int64_t in = intArg(info[2], "fuseRows: in", 1, kMaxElements);
  const auto b = f32Arg(info[3], "fuseRows: b");
  const auto a = f32Arg(info[4], "fuseRows: a");
  const int64_t r = intArg(info[5], "fuseRows: r", 1, 65536);
  const int64_t wn = product(env, "fuseRows: out·in", out, in);
  const int64_t bn = product(env, "fuseRows: out·r", out, r);
  const int64_t an = product(env, "fuseRows: r·in", r, in);
  needAtLeast(env, w, wn, "fuseRows: w");
  needAtLeast(env, b, bn, "fuseRows: b");
  needAtLeast(env, a, an, "fuseRows: a");
  noOverlap(env, w.data, wn * 4, "fuseRows: w", b.data, bn * 4, "b");
  noOverlap(env, w.data, wn * 4, "fuseRows: w", a.data, an * 4, "a");
  const float* src = nullptr;
  if (info.Length() > 6 && !info[6].IsUndefined()) {
    const auto s = f32Arg(info[6], "fuseRows: src");
    needAtLeast(env, s, wn, "fuseRows: src");
    noOverlap(env, w.data, wn * 4, "fuseRows: w", s.data, wn * 4, "src");
    src = s.data;
  }
  le::fuseRows(w.data, out, in, b.data, a.data, r, src);
  return env.Undefined();
}

Napi::Value setThreads(const Napi::CallbackInfo& info) {
  pool().setThreads(static_cast<int>(intArg(info[0], "setThreads: n", 1, ThreadPool::kMaxThreads)));
  return info.Env().Undefined();
}

Napi::Value threads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), pool().threads()); }

// setIsa('auto' | 'avx512' | 'avx2' | 'portable'): for tests and comparisons.
Napi::Value setIsa(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) throwType(info.Env(), "setIsa: name must be a string");
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  if (!selectKernels(name.c_str())) throwRange(info.Env(), "setIsa: '" + name + "' is unknown or not supported by this CPU");
  return Napi::String::New(info.Env(), kernels().name);
}

Napi::Value isa(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), kernels().name); }

Napi::Object init(Napi::Env env, Napi::Object exports) {
  const struct {
    const char* name;
    Napi::Value (*fn)(const Napi::CallbackInfo&);
  } fns[] = {
      {"createWeight", guarded<createWeight>},
      {"createLora", guarded<createLora>},
      {"createVeraProjection", guarded<createVeraProjection>},
      {"createVera", guarded<createVera>},
      {"loraInfo", guarded<loraInfo>},
      {"release", guarded<release>},
      {"matmul", guarded<matmul>},
      {"lora", guarded<lora>},
      {"rmsnorm", guarded<rmsnorm>},
      {"rope", guarded<rope>},
      {"attention", guarded<attention>},
      {"siluMul", guarded<siluMul>},
      {"fuseRows", guarded<fuseRows>},
      {"setThreads", guarded<setThreads>},
      {"threads", guarded<threads>},
      {"setIsa", guarded<setIsa>},
      {"isa", guarded<isa>},
  };
  for (const auto& f : fns) exports.Set(f.name, Napi::Function::New(env, f.fn, f.name));
  return exports;
}

}  // namespace
}  // namespace le

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return le::init(env, exports); }

NODE_API_MODULE(lora_edge_native, Init)
