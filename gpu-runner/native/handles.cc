#include "handles.h"

#include <cstring>
#include <memory>
#include <string>

#include "args.h"

namespace le {
namespace {

// Random 128-bit tags: napi_check_object_type_tag tells our externals from any other object.
constexpr napi_type_tag kWeightTag = {0x6c6f72612d656467ULL, 0x7765696768740001ULL};
constexpr napi_type_tag kLoraTag = {0x6c6f72612d656467ULL, 0x6c6f726100000002ULL};

void adjustMemory(Napi::Env env, size_t bytes, bool add) {
  if (bytes) Napi::MemoryManagement::AdjustExternalMemory(env, add ? static_cast<int64_t>(bytes) : -static_cast<int64_t>(bytes));
}

template <class T>
void copyInto(Buffer& dst, const Span<T>& src) {
  dst.allocate(src.bytes());
  if (src.len) std::memcpy(dst.as<T>(), src.data, src.bytes());
}

uint16_t f32ToBf16(float v) {
  uint32_t x;
  std::memcpy(&x, &v, sizeof x);
  if ((x & 0x7f800000u) == 0x7f800000u && (x & 0x7fffffu)) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);  // round to nearest even
}

Napi::Object requireObject(const Napi::Value& v, const char* what) {
  if (!v.IsObject() || v.IsTypedArray() || v.IsArray()) throwType(v.Env(), std::string(what) + " must be an object");
  return v.As<Napi::Object>();
}

std::string stringArg(const Napi::Value& v, const char* what) {
  if (!v.IsString()) throwType(v.Env(), std::string(what) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
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

// Fills one factor as a weight [rows, cols] in the requested storage precision; with
// `transpose`, src is [cols, rows] and is stored transposed.
void fillFactor(WeightNative& w, DType dtype, int64_t rows, int64_t cols, const Span<float>& src, bool transpose) {
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
  DType dtype = DType::F32;
  const Napi::Value dt = init.Get("dtype");
  if (!dt.IsUndefined()) {
    const std::string s = stringArg(dt, "init.dtype");
    if (s == "bf16") {
      dtype = DType::BF16;
    } else if (s != "f32") {
      throwRange(env, "init.dtype must be 'f32' or 'bf16', got '" + s + "'");
    }
  }
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
  // B is kept transposed, [rank, out]: the expand then runs along contiguous output rows.
  fillFactor(h->Bt, dtype, h->rank, h->out, B, true);
  return wrap(env, std::move(h), kLoraTag);
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
