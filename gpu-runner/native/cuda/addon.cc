// The N-API surface of the cuda backend (module lora_edge_cuda). The same entry points and the
// same argument rules as the cpu-native addon: every argument is checked before the device is
// touched; weights and LoRA stacks live in device memory behind type-tagged externals; each op
// stages the caller's Float32Arrays on the device, runs its kernels on the module's stream, copies
// the result back and waits. Every CUDA error becomes a JavaScript Error, never an abort.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "args.h"
#include "device.h"
#include "kernels.h"

namespace le {
namespace cuda {
namespace {

using namespace le::cudaargs;

using Fn = Napi::Value (*)(const Napi::CallbackInfo&);

template <Fn F>
Napi::Value guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const NoDevice& e) {
    throw Napi::Error::New(info.Env(), e.what());
  } catch (const CudaError& e) {
    throw Napi::Error::New(info.Env(), std::string("lora-edge cuda: ") + e.what());
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(info.Env(), "lora-edge cuda: out of host memory");
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string("lora-edge cuda: ") + e.what());
  }
}

// Random 128-bit tags, distinct from the cpu-native addon's: a handle of one backend is refused
// by the other.
constexpr napi_type_tag kWeightTag = {0x6c6f72612d656467ULL, 0x6375646177740003ULL};
constexpr napi_type_tag kLoraTag = {0x6c6f72612d656467ULL, 0x637564616c720004ULL};

struct CudaWeight {
  DevWeight view{};
  DeviceBuffer data;
  DeviceBuffer scales;  // NF4: absmax, then the 16-entry quant map
  bool released = false;

  size_t bytes() const { return data.bytes() + scales.bytes(); }
  void release() {
    data.reset();
    scales.reset();
    released = true;
  }
};

struct CudaLora {
  int64_t rank = 0;
  int64_t out = 0;
  int64_t in = 0;
  bool bf16 = false;
  DeviceBuffer A;   // [rank, padK(in)], zero padded
  DeviceBuffer Bt;  // [rank, out]
  DeviceBuffer rowScale;
  bool released = false;

  size_t bytes() const { return A.bytes() + Bt.bytes() + rowScale.bytes(); }
  void release() {
    A.reset();
    Bt.reset();
    rowScale.reset();
    released = true;
  }
  LoraDesc desc() const {
    return {A.as<void>(), Bt.as<void>(), rowScale.bytes() ? rowScale.as<float>() : nullptr, static_cast<int32_t>(rank), bf16 ? 1 : 0};
  }
};

void account(Napi::Env env, size_t bytes, bool add) {
  if (!bytes) return;
  const int64_t b = static_cast<int64_t>(bytes);
  gHandleBytes += add ? b : -b;
  Napi::MemoryManagement::AdjustExternalMemory(env, add ? b : -b);
}

template <class T>
Napi::Value wrap(Napi::Env env, std::unique_ptr<T> p, const napi_type_tag& tag) {
  const size_t bytes = p->bytes();
  auto ext = Napi::External<T>::New(env, p.get(), [](Napi::Env e, T* q) {
    account(e, q->bytes(), false);
    delete q;  // frees the device memory (errors ignored: this may run during shutdown)
  });
  p.release();
  ext.TypeTag(&tag);
  account(env, bytes, true);
  return ext;
}

template <class T>
T* unwrapAny(const Napi::Value& v, const napi_type_tag& tag, const char* what, const char* kind) {
  if (!v.IsExternal()) throwType(v.Env(), std::string(what) + " must be a " + kind + " handle of the cuda backend");
  auto ext = v.As<Napi::External<T>>();
  if (!ext.CheckTypeTag(&tag)) throwType(v.Env(), std::string(what) + " is not a " + kind + " handle of the cuda backend");
  return ext.Data();
}

const CudaWeight& unwrapWeight(const Napi::Value& v, const char* what) {
  const CudaWeight* w = unwrapAny<CudaWeight>(v, kWeightTag, what, "weight");
  if (w->released) throw Napi::Error::New(v.Env(), std::string(what) + " has been released");
  return *w;
}

const CudaLora& unwrapLora(const Napi::Value& v, const char* what) {
  const CudaLora* h = unwrapAny<CudaLora>(v, kLoraTag, what, "LoRA");
  if (h->released) throw Napi::Error::New(v.Env(), std::string(what) + " has been released");
  return *h;
}

uint16_t f32ToBf16(float v) {
  uint32_t x;
  std::memcpy(&x, &v, sizeof x);
  if ((x & 0x7f800000u) == 0x7f800000u && (x & 0x7fffffu)) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);  // round to nearest even
}

// Copies `rows` rows of rowBytes each (dense on the host) into dst with row pitch `pitch`,
// zeroing the padding [rowBytes, pitch) of every row.
void stageRows(void* dst, const void* src, size_t rowBytes, size_t pitch, size_t rows, cudaStream_t s) {
  if (rows == 0) return;
  if (pitch == rowBytes) {
    LE_CUDA_CHECK(cudaMemcpyAsync(dst, src, rowBytes * rows, cudaMemcpyHostToDevice, s));
    return;
  }
  LE_CUDA_CHECK(cudaMemset2DAsync(static_cast<char*>(dst) + rowBytes, pitch, 0, pitch - rowBytes, rows, s));
  if (rowBytes) LE_CUDA_CHECK(cudaMemcpy2DAsync(dst, pitch, src, rowBytes, rowBytes, rows, cudaMemcpyHostToDevice, s));
}

void upload(DeviceBuffer& buf, const void* src, size_t bytes, cudaStream_t s) {
  buf.allocate(bytes);
  if (bytes) LE_CUDA_CHECK(cudaMemcpyAsync(buf.as<void>(), src, bytes, cudaMemcpyHostToDevice, s));
}

void toDevice(void* dst, const void* src, size_t bytes, cudaStream_t s) {
  if (bytes) LE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
}

void toHost(void* dst, const void* src, size_t bytes, cudaStream_t s) {
  if (bytes) LE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
}

// The device, locked and current for this thread, for the duration of one entry point.
struct Session {
  Device& dev;
  std::lock_guard<std::mutex> lock;
  explicit Session(Device& d) : dev(d), lock(d.mutex()) { dev.bind(); }
  cudaStream_t stream() const { return dev.stream(); }
  template <class T>
  T* scratch(ScratchSlot slot, size_t count) {
    DeviceBuffer& b = dev.scratch(slot);
    b.ensure(count * sizeof(T));
    return b.as<T>();
  }
};

// ---------------------------------------------------------------------------------------------
// Handles

Napi::Value createWeight(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object init = requireObject(info[0], "createWeight(init): init");
  const std::string dtype = stringArg(init.Get("dtype"), "init.dtype");
  const int64_t out = intArg(init.Get("out"), "init.out", 1, kMaxDim);
  const int64_t in = intArg(init.Get("in"), "init.in", 1, kMaxDim);
  const int64_t count = product(env, "init.out · init.in", out, in);
  const Napi::Value data = init.Get("data");
  auto w = std::make_unique<CudaWeight>();
  DevWeight& v = w->view;
  v.out = out;
  v.in = in;
  v.ld = padK(in);
  v.blockShift = -1;
  Span<float> f32{}, absmax{}, quantMap{};
  Span<uint16_t> u16{};
  Span<uint8_t> u8{};
  if (dtype == "f32") {
    v.dtype = DType::F32;
    f32 = f32Arg(data, "init.data (f32)");
    needExactly(env, f32, count, "init.data");
  } else if (dtype == "bf16" || dtype == "f16") {
    v.dtype = dtype == "bf16" ? DType::BF16 : DType::F16;
    u16 = u16Arg(data, dtype == "bf16" ? "init.data (bf16 bits)" : "init.data (f16 bits)");
    needExactly(env, u16, count, "init.data");
  } else if (dtype == "nf4") {
    v.dtype = DType::NF4;
    u8 = u8Arg(data, "init.data (nf4 packed codes)");
    needExactly(env, u8, (count + 1) / 2, "init.data");
    const Napi::Object nf4 = requireObject(init.Get("nf4"), "init.nf4");
    v.blocksize = intArg(nf4.Get("blocksize"), "init.nf4.blocksize", 1, kMaxDim);
    absmax = f32Arg(nf4.Get("absmax"), "init.nf4.absmax");
    needExactly(env, absmax, (count + v.blocksize - 1) / v.blocksize, "init.nf4.absmax");
    quantMap = f32Arg(nf4.Get("quantMap"), "init.nf4.quantMap");
    needExactly(env, quantMap, 16, "init.nf4.quantMap");
    if ((v.blocksize & (v.blocksize - 1)) == 0) {
      int shift = 0;
      while ((int64_t{1} << shift) < v.blocksize) shift++;
      v.blockShift = shift;
    }
  } else {
    throwRange(env, "init.dtype must be 'f32', 'bf16', 'f16' or 'nf4', got '" + dtype + "'");
  }

  Session s(Device::get());
  const size_t rows = static_cast<size_t>(out);
  switch (v.dtype) {
    case DType::F32:
    case DType::BF16:
    case DType::F16: {
      const size_t es = v.dtype == DType::F32 ? 4 : 2;
      w->data.allocate(rows * static_cast<size_t>(v.ld) * es);
      stageRows(w->data.as<void>(), v.dtype == DType::F32 ? static_cast<const void*>(f32.data) : u16.data, static_cast<size_t>(in) * es,
                static_cast<size_t>(v.ld) * es, rows, s.stream());
      break;
    }
    case DType::NF4: {
      const size_t pitch = static_cast<size_t>(v.ld / 2);
      w->data.allocate(rows * pitch);
      if (in % 2 == 0) {
        stageRows(w->data.as<void>(), u8.data, static_cast<size_t>(in / 2), pitch, rows, s.stream());
      } else {
        // Odd rows start mid-byte in the flattened layout: repack so every row starts a byte.
        std::vector<uint8_t> packed(rows * pitch, 0);
        for (int64_t j = 0; j < out; j++) {
          uint8_t* dst = packed.data() + static_cast<size_t>(j) * pitch;
          for (int64_t k = 0; k < in; k++) {
            const int64_t f = j * in + k;
            const uint8_t byte = u8.data[f >> 1];
            const uint8_t code = (f & 1) ? (byte & 15) : (byte >> 4);
            dst[k >> 1] |= (k & 1) ? code : static_cast<uint8_t>(code << 4);
          }
        }
        toDevice(w->data.as<void>(), packed.data(), packed.size(), s.stream());
        s.dev.sync();  // `packed` dies here
      }
      w->scales.allocate((absmax.len + 16) * sizeof(float));
      toDevice(w->scales.as<float>(), absmax.data, absmax.bytes(), s.stream());
      toDevice(w->scales.as<float>() + absmax.len, quantMap.data, 16 * sizeof(float), s.stream());
      v.absmax = w->scales.as<float>();
      v.quantMap = w->scales.as<float>() + absmax.len;
      break;
    }
  }
  v.data = w->data.as<void>();
  s.dev.sync();
  return wrap(env, std::move(w), kWeightTag);
}

Napi::Value createLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object init = requireObject(info[0], "createLora(init): init");
  auto h = std::make_unique<CudaLora>();
  h->rank = intArg(init.Get("rank"), "init.rank", 1, kMaxDim);
  h->out = intArg(init.Get("out"), "init.out", 1, kMaxDim);
  h->in = intArg(init.Get("in"), "init.in", 1, kMaxDim);
  const Napi::Value dt = init.Get("dtype");
  if (!dt.IsUndefined()) {
    const std::string s = stringArg(dt, "init.dtype");
    if (s == "bf16") {
      h->bf16 = true;
    } else if (s != "f32") {
      throwRange(env, "init.dtype must be 'f32' or 'bf16', got '" + s + "'");
    }
  }
  // The layout is checked by the cpu-native rules, but this backend has no sparse expand yet: it
  // stores every B densely (the same numbers within f32 rounding; see CUDA.md).
  const Napi::Value layout = init.Get("layout");
  if (!layout.IsUndefined()) {
    const std::string s = stringArg(layout, "init.layout");
    if (s != "auto" && s != "dense" && s != "sparse") throwRange(env, "init.layout must be 'auto', 'dense' or 'sparse', got '" + s + "'");
    if (s == "sparse" && h->rank > 256) throwRange(env, "init.layout 'sparse' needs rank ≤ 256, got " + std::to_string(h->rank));
  }
  const auto A = f32Arg(init.Get("A"), "init.A");
  needExactly(env, A, product(env, "init.rank · init.in", h->rank, h->in), "init.A");
  const auto B = f32Arg(init.Get("B"), "init.B");
  needExactly(env, B, product(env, "init.out · init.rank", h->out, h->rank), "init.B");
  Span<float> rs{};
  const Napi::Value rsv = init.Get("rowScale");
  if (!rsv.IsUndefined() && !rsv.IsNull()) {
    rs = f32Arg(rsv, "init.rowScale");
    needExactly(env, rs, h->out, "init.rowScale");
  }
  if (h->rank > (int64_t{1} << 24)) throwRange(env, "init.rank is too large for the cuda backend");

  Session s(Device::get());
  const size_t rank = static_cast<size_t>(h->rank), out = static_cast<size_t>(h->out), in = static_cast<size_t>(h->in);
  const size_t ld = static_cast<size_t>(padK(h->in));
  const size_t es = h->bf16 ? 2 : 4;
  // B is stored transposed, Bt [rank, out]: the expand reads contiguous output rows.
  std::vector<float> bt32;
  std::vector<uint16_t> a16, bt16;
  if (h->bf16) {
    a16.resize(rank * in);
    for (size_t i = 0; i < a16.size(); i++) a16[i] = f32ToBf16(A.data[i]);
    bt16.resize(rank * out);
    for (size_t j = 0; j < out; j++)
      for (size_t r = 0; r < rank; r++) bt16[r * out + j] = f32ToBf16(B.data[j * rank + r]);
  } else {
    bt32.resize(rank * out);
    for (size_t j = 0; j < out; j++)
      for (size_t r = 0; r < rank; r++) bt32[r * out + j] = B.data[j * rank + r];
  }
  h->A.allocate(rank * ld * es);
  stageRows(h->A.as<void>(), h->bf16 ? static_cast<const void*>(a16.data()) : A.data, in * es, ld * es, rank, s.stream());
  upload(h->Bt, h->bf16 ? static_cast<const void*>(bt16.data()) : bt32.data(), rank * out * es, s.stream());
  if (rs.data) upload(h->rowScale, rs.data, rs.bytes(), s.stream());
  s.dev.sync();  // the host staging vectors die here
  return wrap(env, std::move(h), kLoraTag);
}

Napi::Value release(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Napi::Value v = info[0];
  if (v.IsExternal()) {
    const auto ext = v.As<Napi::External<void>>();
    if (ext.CheckTypeTag(&kWeightTag)) {
      auto* w = static_cast<CudaWeight*>(ext.Data());
      account(env, w->bytes(), false);
      w->release();
      return env.Undefined();
    }
    if (ext.CheckTypeTag(&kLoraTag)) {
      auto* h = static_cast<CudaLora*>(ext.Data());
      account(env, h->bytes(), false);
      h->release();
      return env.Undefined();
    }
  }
  throwType(env, "release(handle): not a handle of the cuda backend");
}

// ---------------------------------------------------------------------------------------------
// Ops

constexpr int64_t kMaxRows = kMaxDim;

// matmul(y, x, n, weight)
Napi::Value matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const auto y = f32Arg(info[0], "matmul: y");
  const auto x = f32Arg(info[1], "matmul: x");
  const int64_t n = intArg(info[2], "matmul: n", 0, kMaxRows);
  const CudaWeight& w = unwrapWeight(info[3], "matmul: weight");
  const int64_t in = w.view.in, out = w.view.out, ld = w.view.ld;
  const int64_t xs = product(env, "matmul: n · in", n, in);
  const int64_t ys = product(env, "matmul: n · out", n, out);
  needAtLeast(env, x, xs, "matmul: x");
  needAtLeast(env, y, ys, "matmul: y");
  noOverlap(env, y.data, ys * 4, "matmul: y", x.data, xs * 4, "x");
  if (n == 0) return env.Undefined();
  Session s(Device::get());
  float* dx = s.scratch<float>(kScratchX, static_cast<size_t>(product(env, "matmul: n · padded in", n, ld)));
  float* dy = s.scratch<float>(kScratchY, static_cast<size_t>(ys));
  stageRows(dx, x.data, static_cast<size_t>(in) * 4, static_cast<size_t>(ld) * 4, static_cast<size_t>(n), s.stream());
  LE_CUDA_CHECK(launchMatmul(w.view, dx, dy, n, s.stream()));
  toHost(y.data, dy, static_cast<size_t>(ys) * 4, s.stream());
  s.dev.sync();
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
  std::vector<const CudaLora*> hs(nh);
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
  const int64_t in = hs[0]->in, out = hs[0]->out;
  const int64_t xs = product(env, "lora: n · in", n, in);
  const int64_t ys = product(env, "lora: n · out", n, out);
  needAtLeast(env, x, xs, "lora: x");
  needAtLeast(env, y, ys, "lora: y");
  noOverlap(env, y.data, ys * 4, "lora: y", x.data, xs * 4, "x");

  // Group rows by slot, batch order kept inside a slot (a counting sort), then cut each group
  // into items of ≤ kLoraRows rows.
  std::vector<int64_t> start(static_cast<size_t>(nh) + 1, 0);
  for (int64_t i = 0; i < n; i++)
    if (slots.data[i] >= 0) start[static_cast<size_t>(slots.data[i]) + 1]++;
  for (uint32_t k = 0; k < nh; k++) start[k + 1] += start[k];
  const int64_t active = start[nh];
  if (active == 0) return env.Undefined();
  std::vector<int32_t> order(static_cast<size_t>(active));
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < n; i++)
      if (slots.data[i] >= 0) order[static_cast<size_t>(fill[static_cast<size_t>(slots.data[i])]++)] = static_cast<int32_t>(i);
  }
  std::vector<LoraItem> items;
  std::vector<LoraDesc> descs(nh);
  int32_t maxRank = 0;
  for (uint32_t k = 0; k < nh; k++) {
    descs[k] = hs[k]->desc();
    const int64_t rows = start[k + 1] - start[k];
    if (rows == 0) continue;
    maxRank = std::max(maxRank, static_cast<int32_t>(hs[k]->rank));
    for (int64_t r = 0; r < rows; r += kLoraRows)
      items.push_back({static_cast<int32_t>(k), static_cast<int32_t>(start[k] + r), static_cast<int32_t>(std::min<int64_t>(kLoraRows, rows - r))});
  }
  // One upload for the three tables.
  auto align = [](size_t b) { return (b + 15) / 16 * 16; };
  const size_t descBytes = align(descs.size() * sizeof(LoraDesc)), itemBytes = align(items.size() * sizeof(LoraItem));
  const size_t orderBytes = order.size() * sizeof(int32_t);
  std::vector<uint8_t> tables(descBytes + itemBytes + orderBytes);
  std::memcpy(tables.data(), descs.data(), descs.size() * sizeof(LoraDesc));
  std::memcpy(tables.data() + descBytes, items.data(), items.size() * sizeof(LoraItem));
  std::memcpy(tables.data() + descBytes + itemBytes, order.data(), orderBytes);

  Session s(Device::get());
  const int64_t ld = padK(in);
  uint8_t* dt = s.scratch<uint8_t>(kScratchAux, tables.size());
  float* dx = s.scratch<float>(kScratchX, static_cast<size_t>(product(env, "lora: n · padded in", n, ld)));
  float* dy = s.scratch<float>(kScratchY, static_cast<size_t>(ys));
  float* dtmp = s.scratch<float>(kScratchT, static_cast<size_t>(product(env, "lora: rows · rank", active, maxRank)));
  toDevice(dt, tables.data(), tables.size(), s.stream());
  stageRows(dx, x.data, static_cast<size_t>(in) * 4, static_cast<size_t>(ld) * 4, static_cast<size_t>(n), s.stream());
  toDevice(dy, y.data, static_cast<size_t>(ys) * 4, s.stream());
  LE_CUDA_CHECK(launchLora(reinterpret_cast<const LoraDesc*>(dt), reinterpret_cast<const LoraItem*>(dt + descBytes),
                           static_cast<int32_t>(items.size()), reinterpret_cast<const int32_t*>(dt + descBytes + itemBytes), dx, in, dy, out,
                           dtmp, maxRank, s.stream()));
  toHost(y.data, dy, static_cast<size_t>(ys) * 4, s.stream());
  s.dev.sync();
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
  if (n == 0) return env.Undefined();
  Session s(Device::get());
  float* dx = s.scratch<float>(kScratchX, static_cast<size_t>(size));
  float* dy = s.scratch<float>(kScratchY, static_cast<size_t>(size));
  float* dw = s.scratch<float>(kScratchAux, static_cast<size_t>(dim));
  toDevice(dx, x.data, static_cast<size_t>(size) * 4, s.stream());
  toDevice(dw, weight.data, static_cast<size_t>(dim) * 4, s.stream());
  LE_CUDA_CHECK(launchRmsnorm(dy, dx, n, dim, dw, static_cast<float>(eps), s.stream()));
  toHost(y.data, dy, static_cast<size_t>(size) * 4, s.stream());
  s.dev.sync();
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
  const int64_t size = product(env, "rope: n · heads · headDim", n, heads, headDim);
  needAtLeast(env, x, size, "rope: x");
  needAtLeast(env, positions, n, "rope: positions");
  if (size == 0) return env.Undefined();
  const int64_t half = headDim / 2;
  std::vector<double> invFreq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; i++) invFreq[i] = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(headDim));
  Session s(Device::get());
  float* dx = s.scratch<float>(kScratchX, static_cast<size_t>(size));
  const size_t posBytes = (static_cast<size_t>(n) * 4 + 15) / 16 * 16;
  uint8_t* aux = s.scratch<uint8_t>(kScratchAux, posBytes + invFreq.size() * sizeof(double));
  toDevice(dx, x.data, static_cast<size_t>(size) * 4, s.stream());
  toDevice(aux, positions.data, static_cast<size_t>(n) * 4, s.stream());
  toDevice(aux + posBytes, invFreq.data(), invFreq.size() * sizeof(double), s.stream());
  LE_CUDA_CHECK(
      launchRope(dx, n, heads, headDim, reinterpret_cast<const int32_t*>(aux), reinterpret_cast<const double*>(aux + posBytes), s.stream()));
  toHost(x.data, dx, static_cast<size_t>(size) * 4, s.stream());
  s.dev.sync();
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
  const int64_t nTokens = intArg(a.Get("nTokens"), "attention: nTokens", 0, kMaxRows);
  const int64_t start = intArg(a.Get("start"), "attention: start", 0, kMaxRows);
  const int64_t heads = intArg(a.Get("heads"), "attention: heads", 1, kMaxDim);
  const int64_t kvHeads = intArg(a.Get("kvHeads"), "attention: kvHeads", 1, kMaxDim);
  const int64_t headDim = intArg(a.Get("headDim"), "attention: headDim", 1, kMaxDim);
  if (heads % kvHeads) throwRange(env, "attention: heads must be a multiple of kvHeads");
  const int64_t qs = product(env, "attention: nTokens · heads · headDim", nTokens, heads, headDim);
  const int64_t cs = product(env, "attention: (start + nTokens) · kvHeads · headDim", start + nTokens, kvHeads, headDim);
  needAtLeast(env, q, qs, "attention: q");
  needAtLeast(env, out, qs, "attention: out");
  needAtLeast(env, k, cs, "attention: kCache");
  needAtLeast(env, v, cs, "attention: vCache");
  noOverlap(env, out.data, qs * 4, "attention: out", q.data, qs * 4, "q");
  noOverlap(env, out.data, qs * 4, "attention: out", k.data, cs * 4, "kCache");
  noOverlap(env, out.data, qs * 4, "attention: out", v.data, cs * 4, "vCache");
  if (headDim > kMaxHeadDim) throwRange(env, "attention: headDim must be ≤ " + std::to_string(kMaxHeadDim) + " on the cuda backend");
  if (nTokens * heads > 0x7fffffff) throwRange(env, "attention: nTokens · heads is too large for the cuda backend");
  if (nTokens == 0) return env.Undefined();
  Session s(Device::get());
  float* dq = s.scratch<float>(kScratchX, static_cast<size_t>(qs));
  float* dout = s.scratch<float>(kScratchY, static_cast<size_t>(qs));
  float* dk = s.scratch<float>(kScratchK, static_cast<size_t>(cs));
  float* dv = s.scratch<float>(kScratchV, static_cast<size_t>(cs));
  toDevice(dq, q.data, static_cast<size_t>(qs) * 4, s.stream());
  toDevice(dk, k.data, static_cast<size_t>(cs) * 4, s.stream());
  toDevice(dv, v.data, static_cast<size_t>(cs) * 4, s.stream());
  LE_CUDA_CHECK(launchAttention(dout, dq, dk, dv, nTokens, start, heads, kvHeads, headDim, s.stream()));
  toHost(out.data, dout, static_cast<size_t>(qs) * 4, s.stream());
  s.dev.sync();
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
  if (len == 0) return env.Undefined();
  Session s(Device::get());
  float* dg = s.scratch<float>(kScratchX, static_cast<size_t>(len));
  toDevice(dg, gate.data, static_cast<size_t>(len) * 4, s.stream());
  float* du = dg;
  if (up.data != gate.data) {
    du = s.scratch<float>(kScratchY, static_cast<size_t>(len));
    toDevice(du, up.data, static_cast<size_t>(len) * 4, s.stream());
  }
  LE_CUDA_CHECK(launchSiluMul(dg, du, len, s.stream()));
  toHost(gate.data, dg, static_cast<size_t>(len) * 4, s.stream());
  s.dev.sync();
  return env.Undefined();
}

// ---------------------------------------------------------------------------------------------
// Introspection (never throws, never needs a device)

// info() → { count, error?, runtimeVersion, driverVersion, device?: { index, name, major, minor,
// multiprocessors, memoryBytes, l2Bytes } }
Napi::Value deviceInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object r = Napi::Object::New(env);
  std::string why;
  const int n = Device::count(&why);
  r.Set("count", n);
  if (n == 0) r.Set("error", "no CUDA device: " + why);
  int rt = 0, drv = 0;
  if (cudaRuntimeGetVersion(&rt) != cudaSuccess) cudaGetLastError();
  if (cudaDriverGetVersion(&drv) != cudaSuccess) cudaGetLastError();
  r.Set("runtimeVersion", rt);
  r.Set("driverVersion", drv);
  if (n > 0) {
    const char* env0 = std::getenv("LORA_EDGE_CUDA_DEVICE");
    const int index = env0 && *env0 ? std::atoi(env0) : 0;
    cudaDeviceProp p{};
    if (index >= 0 && index < n && cudaGetDeviceProperties(&p, index) == cudaSuccess) {
      Napi::Object d = Napi::Object::New(env);
      d.Set("index", index);
      d.Set("name", std::string(p.name));
      d.Set("major", p.major);
      d.Set("minor", p.minor);
      d.Set("multiprocessors", p.multiProcessorCount);
      d.Set("memoryBytes", static_cast<double>(p.totalGlobalMem));
      d.Set("l2Bytes", p.l2CacheSize);
      r.Set("device", d);
    } else {
      cudaGetLastError();
      r.Set("error", "no CUDA device: LORA_EDGE_CUDA_DEVICE=" + std::string(env0 ? env0 : "") + " but there " +
                         (n == 1 ? std::string("is 1 device") : "are " + std::to_string(n) + " devices"));
    }
  }
  return r;
}

// stats() → { handleBytes, scratchBytes }: device memory held by live handles and by staging.
Napi::Value stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object r = Napi::Object::New(env);
  r.Set("handleBytes", static_cast<double>(gHandleBytes.load()));
  size_t scratch = 0;
  if (Device* d = Device::existing()) {
    std::lock_guard<std::mutex> lock(d->mutex());
    scratch = d->scratchBytes();
  }
  r.Set("scratchBytes", static_cast<double>(scratch));
  return r;
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  const struct {
    const char* name;
    Napi::Value (*fn)(const Napi::CallbackInfo&);
  } fns[] = {
      {"createWeight", guarded<createWeight>},
      {"createLora", guarded<createLora>},
      {"release", guarded<release>},
      {"matmul", guarded<matmul>},
      {"lora", guarded<lora>},
      {"rmsnorm", guarded<rmsnorm>},
      {"rope", guarded<rope>},
      {"attention", guarded<attention>},
      {"siluMul", guarded<siluMul>},
      {"info", guarded<deviceInfo>},
      {"stats", guarded<stats>},
  };
  for (const auto& f : fns) exports.Set(f.name, Napi::Function::New(env, f.fn, f.name));
  return exports;
}

}  // namespace
}  // namespace cuda
}  // namespace le

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return le::cuda::init(env, exports); }

NODE_API_MODULE(lora_edge_cuda, Init)
