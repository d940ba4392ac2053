#include "handles.h"

#include <cstring>
#include <memory>
#include <string>

#include "args.h"
#include "dispatch.h"
#include "factors.h"
#include "lora.h"

namespace le {
namespace {

// Random 128-bit tags: napi_check_object_type_tag tells our externals from any other object.
constexpr napi_type_tag kWeightTag = {0x6c6f72612d656467ULL, 0x7765696768740001ULL};
constexpr napi_type_tag kLoraTag = {0x6c6f72612d656467ULL, 0x6c6f726100000002ULL};
constexpr napi_type_tag kVeraTag = {0x6c6f72612d656467ULL, 0x7665726100000003ULL};

void adjustMemory(Napi::Env env, size_t bytes, bool add) {
  if (bytes) Napi::MemoryManagement::AdjustExternalMemory(env, add ? static_cast<int64_t>(bytes) : -static_cast<int64_t>(bytes));
}

template <class T>
void copyInto(Buffer& dst, const Span<T>& src) {
  dst.allocate(src.bytes());
  if (src.len) std::memcpy(dst.as<T>(), src.data, src.bytes());
}

Napi::Object requireObject(const Napi::Value& v, const char* what) {
  if (!v.IsObject() || v.IsTypedArray() || v.IsArray()) throwType(v.Env(), std::string(what) + " must be an object");
  return v.As<Napi::Object>();
}

std::string stringArg(const Napi::Value& v, const char* what) {
  if (!v.IsString()) throwType(v.Env(), std::string(what) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

// A factor storage precision: 'f32' (default) or 'bf16'.
DType factorDType(const Napi::Value& dt) {
  if (dt.IsUndefined()) return DType::F32;
  const std::string s = stringArg(dt, "init.dtype");
  if (s == "bf16") return DType::BF16;
  if (s != "f32") throwRange(dt.Env(), "init.dtype must be 'f32' or 'bf16', got '" + s + "'");
  return DType::F32;
}

enum class LayoutAsk { Auto, Dense, Sparse };

LayoutAsk layoutArg(const Napi::Value& v) {
  if (v.IsUndefined()) return LayoutAsk::Auto;
  const std::string s = stringArg(v, "init.layout");
  if (s == "auto") return LayoutAsk::Auto;
  if (s == "dense") return LayoutAsk::Dense;
  if (s == "sparse") return LayoutAsk::Sparse;
  throwRange(v.Env(), "init.layout must be 'auto', 'dense' or 'sparse', got '" + s + "'");
}

template <class T>
Napi::Value wrap(Napi::Env env, std::unique_ptr<T> p, const napi_type_tag& tag) {
  const size_t bytes = p->bytes();
  auto ext = Napi::External<T>::New(env, p.get(), [](Napi::Env e, T* q) {
    adjustMemory(e, q->bytes(), false);
    delete q;
  });
  p.release();
  ext.TypeTag(&tag);
  adjustMemory(env, bytes, true);
  return ext;
}

template <class T>
T* unwrapAny(const Napi::Value& v, const napi_type_tag& tag, const char* what, const char* kind) {
  if (!v.IsExternal()) throwType(v.Env(), std::string(what) + " must be a " + kind + " handle of the cpu-native backend");
  auto ext = v.As<Napi::External<T>>();
  if (!ext.CheckTypeTag(&tag)) throwType(v.Env(), std::string(what) + " is not a " + kind + " handle of the cpu-native backend");
  return ext.Data();
}

}  // namespace

Napi::Value createWeight(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object init = requireObject(info[0], "createWeight(init): init");
  const std::string dtype = stringArg(init.Get("dtype"), "init.dtype");
  auto w = std::make_unique<WeightNative>();
  w->out = intArg(init.Get("out"), "init.out", 1, kMaxDim);
  w->in = intArg(init.Get("in"), "init.in", 1, kMaxDim);
  const int64_t count = product(env, "init.out · init.in", w->out, w->in);
  const Napi::Value data = init.Get("data");
  if (dtype == "f32") {
    w->dtype = DType::F32;
    const auto s = f32Arg(data, "init.data (f32)");
    needExactly(env, s, count, "init.data");
    copyInto(w->data, s);
  } else if (dtype == "bf16" || dtype == "f16") {
    w->dtype = dtype == "bf16" ? DType::BF16 : DType::F16;
    const auto s = u16Arg(data, dtype == "bf16" ? "init.data (bf16 bits)" : "init.data (f16 bits)");
    needExactly(env, s, count, "init.data");
    copyInto(w->data, s);
  } else if (dtype == "nf4") {
    w->dtype = DType::NF4;
    const auto s = u8Arg(data, "init.data (nf4 packed codes)");
    needExactly(env, s, (count + 1) / 2, "init.data");
    const Napi::Object nf4 = requireObject(init.Get("nf4"), "init.nf4");
    w->blocksize = intArg(nf4.Get("blocksize"), "init.nf4.blocksize", 1, kMaxDim);
    const auto absmax = f32Arg(nf4.Get("absmax"), "init.nf4.absmax");
    needExactly(env, absmax, (count + w->blocksize - 1) / w->blocksize, "init.nf4.absmax");
    const auto quantMap = f32Arg(nf4.Get("quantMap"), "init.nf4.quantMap");
    needExactly(env, quantMap, 16, "init.nf4.quantMap");
    copyInto(w->data, s);
    copyInto(w->absmax, absmax);
    std::memcpy(w->quantMap, quantMap.data, sizeof w->quantMap);
  } else {
    throwRange(env, "init.dtype must be 'f32', 'bf16', 'f16' or 'nf4', got '" + dtype + "'");
  }
  return wrap(env, std::move(w), kWeightTag);
}

Napi::Value createLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object init = requireObject(info[0], "createLora(init): init");
  auto h = std::make_unique<LoraNative>();
  h->rank = intArg(init.Get("rank"), "init.rank", 1, kMaxDim);
  h->out = intArg(init.Get("out"), "init.out", 1, kMaxDim);
  h->in = intArg(init.Get("in"), "init.in", 1, kMaxDim);
  const DType dtype = factorDType(init.Get("dtype"));
  const LayoutAsk ask = layoutArg(init.Get("layout"));
  if (ask == LayoutAsk::Sparse && h->rank > 256) throwRange(env, "init.layout 'sparse' needs rank ≤ 256, got " + std::to_string(h->rank));
  const auto A = f32Arg(init.Get("A"), "init.A");
  needExactly(env, A, product(env, "init.rank · init.in", h->rank, h->in), "init.A");
  const auto B = f32Arg(init.Get("B"), "init.B");
  needExactly(env, B, product(env, "init.out · init.rank", h->out, h->rank), "init.B");
  const Napi::Value rs = init.Get("rowScale");
  if (!rs.IsUndefined() && !rs.IsNull()) {
    const auto s = f32Arg(rs, "init.rowScale");
    needExactly(env, s, h->out, "init.rowScale");
    copyInto(h->rowScale, s);
  }
  fillFactor(h->A, dtype, h->rank, h->in, A, false);
  // LoRI-style B (≥ 80% exact zeros) is a candidate for the sparse layout; the calibrated rule
  // keeps it only where its expand beats the dense one for this shape.
  bool sparse = ask == LayoutAsk::Sparse;
  if (ask == LayoutAsk::Auto && h->rank <= 256 && countZeros(B) * 5 >= static_cast<int64_t>(B.len) * 4)
    sparse = sparseExpandPays(kernels(), h->rank, h->out, sparseSlots(B, h->out, h->rank));
  if (sparse) {
    h->layout = LoraLayout::Sparse;
    fillSparse(h->sparse, dtype, h->out, h->rank, B);
  } else {
    // B is kept transposed, [rank, out]: the expand then runs along contiguous output rows.
    fillFactor(h->Bt, dtype, h->rank, h->out, B, true);
  }
  return wrap(env, std::move(h), kLoraTag);
}

Napi::Value createVeraProjection(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object init = requireObject(info[0], "createVeraProjection(init): init");
  auto p = std::make_shared<VeraProjNative>();
  p->rank = intArg(init.Get("rank"), "init.rank", 1, kMaxDim);
  p->maxIn = intArg(init.Get("maxIn"), "init.maxIn", 1, kMaxDim);
  p->maxOut = intArg(init.Get("maxOut"), "init.maxOut", 1, kMaxDim);
  const DType dtype = factorDType(init.Get("dtype"));
  const auto A = f32Arg(init.Get("A"), "init.A");
  needExactly(env, A, product(env, "init.rank · init.maxIn", p->rank, p->maxIn), "init.A");
  const auto B = f32Arg(init.Get("B"), "init.B");
  needExactly(env, B, product(env, "init.maxOut · init.rank", p->maxOut, p->rank), "init.B");
  // Both transposed: a module's slices are then the leading rows of At and columns of Bt.
  fillFactor(p->At, dtype, p->maxIn, p->rank, A, true);
  fillFactor(p->Bt, dtype, p->rank, p->maxOut, B, true);
  auto ref = std::make_unique<VeraProjRef>();
  ref->bytes_ = p->bytes();
  ref->proj = std::move(p);
  return wrap(env, std::move(ref), kVeraTag);
}

Napi::Value createVera(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object init = requireObject(info[0], "createVera(init): init");
  const VeraProjRef* ref = unwrapAny<VeraProjRef>(init.Get("projection"), kVeraTag, "init.projection", "VeRA projection");
  if (ref->released) throw Napi::Error::New(env, "init.projection has been released");
  const VeraProjNative& p = *ref->proj;
  auto h = std::make_unique<LoraNative>();
  h->layout = LoraLayout::Vera;
  h->rank = p.rank;
  h->out = intArg(init.Get("out"), "init.out", 1, p.maxOut);
  h->in = intArg(init.Get("in"), "init.in", 1, p.maxIn);
  if (!init.Get("terms").IsArray()) throwType(env, "init.terms must be an array of { lambdaB, lambdaD }");
  const Napi::Array terms = init.Get("terms").As<Napi::Array>();
  h->terms = terms.Length();
  if (h->terms == 0) throwRange(env, "init.terms must hold at least one { lambdaB, lambdaD }");
  h->lambdaB.allocate(static_cast<size_t>(h->terms * h->out) * sizeof(float));
  h->lambdaD.allocate(static_cast<size_t>(h->terms * h->rank) * sizeof(float));
  for (int64_t k = 0; k < h->terms; k++) {
    const std::string what = "init.terms[" + std::to_string(k) + "]";
    const Napi::Object term = requireObject(terms.Get(static_cast<uint32_t>(k)), what.c_str());
    const auto lb = f32Arg(term.Get("lambdaB"), (what + ".lambdaB").c_str());
    needExactly(env, lb, h->out, (what + ".lambdaB").c_str());
    const auto ld = f32Arg(term.Get("lambdaD"), (what + ".lambdaD").c_str());
    needExactly(env, ld, h->rank, (what + ".lambdaD").c_str());
    std::memcpy(h->lambdaB.as<float>() + k * h->out, lb.data, lb.bytes());
    std::memcpy(h->lambdaD.as<float>() + k * h->rank, ld.data, ld.bytes());
  }
  h->proj = ref->proj;
  return wrap(env, std::move(h), kLoraTag);
}

Napi::Value loraInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const LoraNative& h = unwrapLora(info[0], "loraInfo(handle): handle");
  static const char* const names[] = {"dense", "sparse", "vera"};
  Napi::Object o = Napi::Object::New(env);
  o.Set("layout", names[static_cast<int>(h.layout)]);
  o.Set("bytes", static_cast<double>(h.bytes()));
  return o;
}

Napi::Value release(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value v = info[0];
  if (v.IsExternal()) {
    const auto ext = v.As<Napi::External<void>>();
    if (ext.CheckTypeTag(&kWeightTag)) {
      auto* w = static_cast<WeightNative*>(ext.Data());
      adjustMemory(env, w->bytes(), false);
      w->release();
      return env.Undefined();
    }
    if (ext.CheckTypeTag(&kLoraTag)) {
      auto* h = static_cast<LoraNative*>(ext.Data());
      adjustMemory(env, h->bytes(), false);
      h->release();
      return env.Undefined();
    }
    if (ext.CheckTypeTag(&kVeraTag)) {
      auto* p = static_cast<VeraProjRef*>(ext.Data());
      adjustMemory(env, p->bytes(), false);
      p->release();
      p->bytes_ = 0;
      return env.Undefined();
    }
  }
  throwType(env, "release(handle): not a handle of the cpu-native backend");
}

const WeightNative& unwrapWeight(const Napi::Value& v, const char* what) {
  const WeightNative* w = unwrapAny<WeightNative>(v, kWeightTag, what, "weight");
  if (w->released) throw Napi::Error::New(v.Env(), std::string(what) + " has been released");
  return *w;
}

const LoraNative& unwrapLora(const Napi::Value& v, const char* what) {
  const LoraNative* h = unwrapAny<LoraNative>(v, kLoraTag, what, "LoRA");
  if (h->released) throw Napi::Error::New(v.Env(), std::string(what) + " has been released");
  return *h;
}

}  // namespace le
