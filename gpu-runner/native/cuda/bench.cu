// Standalone check and benchmark of the CUDA kernels (no Node): built and run by
// scripts/gpu-check.sh on the GPU machine.
//
//   bench check            small and awkward cases of every kernel against float64 references
//                          computed here (exit 1 on a mismatch); quick enough for compute-sanitizer
//   bench time [out.tsv]   device-only timings (CUDA events, median of repeats, inputs rotated
//                          through more memory than L2 holds) next to the memory-bandwidth floor
//                          (bytes that must move ÷ the measured device-to-device copy rate)
//
// nvcc -std=c++17 -O3 -arch=sm_90 bench.cu matmul.cu ops.cu -o bench
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels.h"

using namespace le::cuda;

#define CK(call)                                                                                           \
  do {                                                                                                     \
    cudaError_t e_ = (call);                                                                               \
    if (e_ != cudaSuccess) {                                                                               \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));           \
      std::exit(2);                                                                                        \
    }                                                                                                      \
  } while (0)

namespace {

// ---------------------------------------------------------------------------------------------
// Host helpers

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint32_t u32() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return static_cast<uint32_t>(s >> 11);
  }
  float sym(float a = 1) { return (static_cast<float>(u32() & 0xffffff) / 16777216.0f * 2 - 1) * a; }
};

float bf16f(uint16_t h) {
  uint32_t u = uint32_t{h} << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t toBf16(float v) {
  uint32_t x;
  std::memcpy(&x, &v, 4);
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}
float f16f(uint16_t h) {
  const int e = (h >> 10) & 31, m = h & 1023;
  const float s = (h & 0x8000) ? -1.0f : 1.0f;
  if (e == 0) return s * std::ldexp(static_cast<float>(m), -24);
  return s * std::ldexp(1.0f + m / 1024.0f, e - 15);
}

const float kNf4[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f, -0.18477343022823334f,
                        -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
                        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

template <class T>
void dmalloc(T** p, size_t bytes) {
  CK(cudaMalloc(reinterpret_cast<void**>(p), bytes));
}

template <class T>
T* devUpload(const std::vector<T>& v) {
  T* p = nullptr;
  dmalloc(&p, std::max<size_t>(v.size(), 1) * sizeof(T));
  if (!v.empty()) CK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

// A weight in the module's device layout (rows padded to padK(in) with zeros), with its exact values.
struct TestWeight {
  DevWeight w{};
  std::vector<double> values;  // [out, in]
  void* data = nullptr;
  float* scales = nullptr;
  size_t bytes = 0;  // device bytes a pass reads
};

TestWeight makeWeight(DType dt, int64_t out, int64_t in, uint64_t seed, int64_t blocksize = 64, bool keepValues = true) {
  Rng rng(seed);
  TestWeight t;
  t.w.dtype = dt;
  t.w.out = out;
  t.w.in = in;
  t.w.ld = padK(in);
  t.w.blockShift = -1;
  t.values.assign(keepValues ? static_cast<size_t>(out * in) : 0, 0.0);
  auto put = [&](int64_t f, double v) {
    if (keepValues) t.values[f] = v;
  };
  const size_t ld = static_cast<size_t>(t.w.ld);
  if (dt == DType::F32) {
    std::vector<float> d(out * ld, 0.0f);
    for (int64_t j = 0; j < out; j++)
      for (int64_t k = 0; k < in; k++) put(j * in + k, d[j * ld + k] = rng.sym());
    t.data = devUpload(d);
    t.bytes = d.size() * 4;
  } else if (dt == DType::BF16 || dt == DType::F16) {
    std::vector<uint16_t> d(out * ld, 0);
    for (int64_t j = 0; j < out; j++)
      for (int64_t k = 0; k < in; k++) {
        uint16_t h = dt == DType::BF16 ? toBf16(rng.sym()) : static_cast<uint16_t>(((rng.u32() & 1) << 15) | ((5 + rng.u32() % 13) << 10) | (rng.u32() & 1023));
        d[j * ld + k] = h;
        put(j * in + k, dt == DType::BF16 ? bf16f(h) : f16f(h));
      }
    t.data = devUpload(d);
    t.bytes = d.size() * 2;
  } else {
    const int64_t count = out * in, nblocks = (count + blocksize - 1) / blocksize;
    std::vector<float> scales(static_cast<size_t>(nblocks) + 16);
    for (int64_t b = 0; b < nblocks; b++) scales[b] = 0.5f + std::fabs(rng.sym());
    std::memcpy(scales.data() + nblocks, kNf4, sizeof kNf4);
    std::vector<uint8_t> d(out * ld / 2, 0);
    for (int64_t j = 0; j < out; j++)
      for (int64_t k = 0; k < in; k++) {
        const uint32_t code = rng.u32() & 15;
        d[j * ld / 2 + k / 2] |= (k & 1) ? code : code << 4;
        const int64_t f = j * in + k;
        put(f, static_cast<double>(kNf4[code] * scales[f / blocksize]));  // rounded to f32 once
      }
    t.data = devUpload(d);
    t.scales = devUpload(scales);
    t.w.absmax = t.scales;
    t.w.quantMap = t.scales + nblocks;
    t.w.blocksize = blocksize;
    if ((blocksize & (blocksize - 1)) == 0) t.w.blockShift = __builtin_ctzll(static_cast<unsigned long long>(blocksize));
    t.bytes = d.size() + nblocks * 4;
  }
  t.w.data = t.data;
  return t;
}

void freeWeight(TestWeight& t) {
  cudaFree(t.data);
  cudaFree(t.scales);
}

// Activations [n, padK(in)], zero padded; values as given.
float* uploadRows(const std::vector<float>& x, int64_t n, int64_t in) {
  const int64_t ld = padK(in);
  std::vector<float> p(static_cast<size_t>(n * ld), 0.0f);
  for (int64_t i = 0; i < n; i++) std::memcpy(&p[i * ld], &x[i * in], in * 4);
  return devUpload(p);
}

std::vector<float> download(const float* d, size_t n) {
  std::vector<float> h(n);
  CK(cudaMemcpy(h.data(), d, n * 4, cudaMemcpyDeviceToHost));
  return h;
}

int failures = 0;
// `time-smoke`: the timing code on tiny shapes, once each (a test of this program, e.g. under the
// CPU emulation); the numbers mean nothing.
bool gSmoke = false;
int64_t gScale = 1;

// |got − want| ≤ tol · mag for all; prints the worst ratio.
void expectClose(const char* label, const std::vector<float>& got, const std::vector<double>& want, const std::vector<double>& mag, double tol) {
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < want.size(); i++) {
    const double r = std::fabs(got[i] - want[i]) / (mag[i] + 1e-30);
    if (!(r <= worst)) {
      worst = r;
      at = i;
    }
  }
  const bool ok = worst <= tol;
  if (!ok) failures++;
  std::printf("%-4s %-58s worst %.2e × scale%s\n", ok ? "ok" : "FAIL", label, worst,
              ok ? "" : (" at " + std::to_string(at) + " got " + std::to_string(got[at]) + " want " + std::to_string(want[at])).c_str());
}

// ---------------------------------------------------------------------------------------------
// check

void checkMatmul(DType dt, int64_t out, int64_t in, int64_t n, int64_t bs, int path) {
  TestWeight t = makeWeight(dt, out, in, static_cast<uint64_t>(out * 131 + in * 7 + n), bs);
  Rng rng(static_cast<uint64_t>(n * 977 + out));
  std::vector<float> x(static_cast<size_t>(n * in));
  for (auto& v : x) v = rng.sym();
  float* dx = uploadRows(x, n, in);
  float* dy = nullptr;
  dmalloc(&dy, std::max<int64_t>(n * out, 1) * 4);
  CK(cudaMemset(dy, 0xff, std::max<int64_t>(n * out, 1) * 4));  // NaN poison: every output must be written
  CK(launchMatmulPath(t.w, dx, dy, n, path, nullptr));
  CK(cudaDeviceSynchronize());
  std::vector<double> want(n * out), mag(n * out);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < out; j++) {
      double s = 0, m = 0;
      for (int64_t k = 0; k < in; k++) {
        const double p = t.values[j * in + k] * x[i * in + k];
        s += p;
        m += std::fabs(p);
      }
      want[i * out + j] = s;
      mag[i * out + j] = m;
    }
  const char* names[] = {"f32", "bf16", "f16", "nf4"};
  char label[128];
  std::snprintf(label, sizeof label, "matmul %s %lldx%lld n=%lld bs=%lld %s", names[static_cast<int>(dt)], (long long)out, (long long)in,
                (long long)n, (long long)bs, path == 1 ? "gemv" : path == 2 ? "gemm" : "auto");
  expectClose(label, download(dy, n * out), want, mag, 1e-5);
  cudaFree(dx);
  cudaFree(dy);
  freeWeight(t);
}

void checkLora() {
  const int64_t in = 129, out = 300;
  const int ranks[] = {1, 8, 16, 72};
  const bool bf16[] = {false, true, false, true};
  const bool scale[] = {false, true, true, false};
  Rng rng(4242);
  std::vector<LoraDesc> descs;
  std::vector<std::vector<double>> A(4), B(4), RS(4);
  std::vector<void*> frees;
  const int64_t ld = padK(in);
  for (int s = 0; s < 4; s++) {
    const int r = ranks[s];
    A[s].resize(r * in);
    B[s].resize(out * r);
    std::vector<float> a32(r * ld, 0.0f), bt32(r * out);
    std::vector<uint16_t> a16(r * ld, 0), bt16(r * out);
    for (int k = 0; k < r; k++)
      for (int64_t c = 0; c < in; c++) {
        const float v = rng.sym();
        if (bf16[s]) a16[k * ld + c] = toBf16(v), A[s][k * in + c] = bf16f(toBf16(v));
        else a32[k * ld + c] = v, A[s][k * in + c] = v;
      }
    for (int64_t j = 0; j < out; j++)
      for (int k = 0; k < r; k++) {
        const float v = rng.sym();
        if (bf16[s]) bt16[k * out + j] = toBf16(v), B[s][j * r + k] = bf16f(toBf16(v));
        else bt32[k * out + j] = v, B[s][j * r + k] = v;
      }
    std::vector<float> rs(out);
    for (auto& v : rs) v = 1 + 0.5f * rng.sym();
    RS[s].assign(rs.begin(), rs.end());
    LoraDesc d{};
    d.A = bf16[s] ? static_cast<void*>(devUpload(a16)) : devUpload(a32);
    d.Bt = bf16[s] ? static_cast<void*>(devUpload(bt16)) : devUpload(bt32);
    d.rowScale = scale[s] ? devUpload(rs) : nullptr;
    d.rank = r;
    d.bf16 = bf16[s];
    frees.push_back(const_cast<void*>(d.A));
    frees.push_back(const_cast<void*>(d.Bt));
    frees.push_back(const_cast<float*>(d.rowScale));
    descs.push_back(d);
  }
  const std::vector<int> slots = {0, 0, 0, 1, 1, -1, 3, 3, 3, 3, 3, 3, 2, 1, 0, 2, -1, 3, 1, 1};
  const int64_t n = static_cast<int64_t>(slots.size());
  std::vector<float> x(n * in), y0(n * out);
  for (auto& v : x) v = rng.sym();
  for (auto& v : y0) v = rng.sym();
  // Group by slot, items of ≤ kLoraRows (as addon.cc does).
  std::vector<int32_t> order;
  std::vector<LoraItem> items;
  int maxRank = 0;
  for (int s = 0; s < 4; s++) {
    const int first = static_cast<int>(order.size());
    for (int64_t i = 0; i < n; i++)
      if (slots[i] == s) order.push_back(static_cast<int32_t>(i));
    const int rows = static_cast<int>(order.size()) - first;
    if (rows) maxRank = std::max(maxRank, ranks[s]);
    for (int r = 0; r < rows; r += kLoraRows) items.push_back({s, first + r, std::min(kLoraRows, rows - r)});
  }
  LoraDesc* dd = devUpload(descs);
  LoraItem* di = devUpload(items);
  int32_t* dord = devUpload(order);
  float* dx = uploadRows(x, n, in);
  float* dy = devUpload(y0);
  float* dt = nullptr;
  dmalloc(&dt, order.size() * maxRank * 4);
  CK(launchLora(dd, di, static_cast<int32_t>(items.size()), dord, dx, in, dy, out, dt, maxRank, nullptr));
  CK(cudaDeviceSynchronize());
  std::vector<double> want(n * out), mag(n * out);
  for (int64_t i = 0; i < n; i++) {
    const int s = slots[i];
    for (int64_t j = 0; j < out; j++) want[i * out + j] = y0[i * out + j], mag[i * out + j] = std::fabs(y0[i * out + j]);
    if (s < 0) continue;
    const int r = ranks[s];
    std::vector<double> t(r), tm(r);
    for (int k = 0; k < r; k++)
      for (int64_t c = 0; c < in; c++) t[k] += A[s][k * in + c] * x[i * in + c], tm[k] += std::fabs(A[s][k * in + c] * x[i * in + c]);
    for (int64_t j = 0; j < out; j++) {
      double keep = y0[i * out + j] * (scale[s] ? static_cast<double>(static_cast<float>(RS[s][j])) : 1.0);
      double acc = keep, m = std::fabs(keep);
      for (int k = 0; k < r; k++) acc += B[s][j * r + k] * t[k], m += std::fabs(B[s][j * r + k]) * tm[k];
      want[i * out + j] = acc;
      mag[i * out + j] = m;
    }
  }
  expectClose("lora ranks 1/8/16/72, f32+bf16, rowScale, segments+scattered", download(dy, n * out), want, mag, 1e-5);
  for (void* p : frees) cudaFree(p);
  cudaFree(dd), cudaFree(di), cudaFree(dord), cudaFree(dx), cudaFree(dy), cudaFree(dt);
}

void checkOps() {
  Rng rng(99);
  {  // rmsnorm
    const int64_t n = 5, dim = 5000;
    std::vector<float> x(n * dim), w(dim);
    for (auto& v : x) v = rng.sym(3);
    for (auto& v : w) v = rng.sym();
    float *dx = devUpload(x), *dw = devUpload(w), *dy = nullptr;
    dmalloc(&dy, x.size() * 4);
    CK(launchRmsnorm(dy, dx, n, dim, dw, 1e-5f, nullptr));
    std::vector<double> want(x.size()), mag(x.size());
    for (int64_t i = 0; i < n; i++) {
      double ss = 0;
      for (int64_t j = 0; j < dim; j++) ss += double(x[i * dim + j]) * x[i * dim + j];
      const double inv = 1 / std::sqrt(ss / dim + 1e-5);
      for (int64_t j = 0; j < dim; j++) want[i * dim + j] = x[i * dim + j] * inv * w[j], mag[i * dim + j] = std::fabs(want[i * dim + j]);
    }
    expectClose("rmsnorm 5x5000", download(dy, x.size()), want, mag, 1e-6);
    cudaFree(dx), cudaFree(dw), cudaFree(dy);
  }
  {  // rope
    const int64_t n = 7, heads = 6, hd = 128;
    const double theta = 500000;
    std::vector<float> x(n * heads * hd);
    for (auto& v : x) v = rng.sym();
    std::vector<int32_t> pos(n);
    for (auto& p : pos) p = static_cast<int32_t>(rng.u32() % 8000);
    std::vector<double> inv(hd / 2);
    for (int64_t i = 0; i < hd / 2; i++) inv[i] = std::pow(theta, -2.0 * i / hd);
    float* dx = devUpload(x);
    int32_t* dp = devUpload(pos);
    double* di = devUpload(inv);
    CK(launchRope(dx, n, heads, hd, dp, di, nullptr));
    std::vector<double> want(x.size()), mag(x.size());
    for (int64_t r = 0; r < n; r++)
      for (int64_t h = 0; h < heads; h++)
        for (int64_t i = 0; i < hd / 2; i++) {
          const double a = pos[r] * inv[i];
          const size_t o = (r * heads + h) * hd;
          const double x0 = x[o + i], x1 = x[o + i + hd / 2];
          want[o + i] = x0 * std::cos(a) - x1 * std::sin(a);
          want[o + i + hd / 2] = x1 * std::cos(a) + x0 * std::sin(a);
          mag[o + i] = mag[o + i + hd / 2] = std::fabs(x0) + std::fabs(x1);
        }
    expectClose("rope 7x6x128 theta 5e5", download(dx, x.size()), want, mag, 1e-6);
    cudaFree(dx), cudaFree(dp), cudaFree(di);
  }
  {  // siluMul
    const int64_t len = 70001;
    std::vector<float> g(len), u(len);
    for (auto& v : g) v = rng.sym(12);
    for (auto& v : u) v = rng.sym(2);
    g[0] = -100, g[1] = 100;
    float *dg = devUpload(g), *du = devUpload(u);
    CK(launchSiluMul(dg, du, len, nullptr));
    std::vector<double> want(len), mag(len);
    for (int64_t i = 0; i < len; i++) want[i] = g[i] / (1 + std::exp(-double(g[i]))) * u[i], mag[i] = std::fabs(want[i]);
    expectClose("siluMul 70001", download(dg, len), want, mag, 1e-6);
    cudaFree(dg), cudaFree(du);
  }
  // attention: every kernel width
  const int64_t cases[][5] = {{1, 0, 1, 1, 1}, {3, 5, 6, 2, 33}, {17, 0, 4, 1, 64}, {3, 50, 4, 2, 100}, {2, 20, 2, 1, 256}, {2, 9, 2, 2, 300}, {1, 3000, 8, 2, 128}};
  for (const auto& c : cases) {
    const int64_t nT = c[0], start = c[1], heads = c[2], kvh = c[3], hd = c[4], len = start + nT, kvDim = kvh * hd;
    std::vector<float> q(nT * heads * hd), k(len * kvDim), v(len * kvDim);
    for (auto& e : q) e = rng.sym(2);
    for (auto& e : k) e = rng.sym(2);
    for (auto& e : v) e = rng.sym();
    float *dq = devUpload(q), *dk = devUpload(k), *dv = devUpload(v), *dout = nullptr;
    dmalloc(&dout, q.size() * 4);
    CK(launchAttention(dout, dq, dk, dv, nT, start, heads, kvh, hd, nullptr));
    std::vector<double> want(q.size()), mag(q.size());
    for (int64_t t = 0; t < nT; t++)
      for (int64_t h = 0; h < heads; h++) {
        const int64_t kv = h / (heads / kvh) * hd, L = start + t + 1;
        std::vector<double> s(L);
        double sens = 0, mx = -1e300;
        for (int64_t j = 0; j < L; j++) {
          double d = 0, a = 0;
          for (int64_t e = 0; e < hd; e++) d += double(q[(t * heads + h) * hd + e]) * k[j * kvDim + kv + e], a += std::fabs(double(q[(t * heads + h) * hd + e]) * k[j * kvDim + kv + e]);
          s[j] = d / std::sqrt(double(hd));
          sens = std::max(sens, a / std::sqrt(double(hd)));
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (auto& e : s) sum += (e = std::exp(e - mx));
        for (int64_t e = 0; e < hd; e++) {
          double o = 0, vm = 0;
          for (int64_t j = 0; j < L; j++) o += s[j] * v[j * kvDim + kv + e], vm = std::max(vm, double(std::fabs(v[j * kvDim + kv + e])));
          want[(t * heads + h) * hd + e] = o / sum;
          mag[(t * heads + h) * hd + e] = vm * (1 + sens);
        }
      }
    char label[96];
    std::snprintf(label, sizeof label, "attention nT=%lld start=%lld heads=%lld/%lld hd=%lld", (long long)nT, (long long)start, (long long)heads,
                  (long long)kvh, (long long)hd);
    expectClose(label, download(dout, q.size()), want, mag, 1e-5);
    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(dout);
  }
}

int runCheck() {
  for (DType dt : {DType::F32, DType::BF16, DType::F16, DType::NF4})
    for (int path : {1, 2})
      for (const auto& sh : std::vector<std::pair<int64_t, int64_t>>{{37, 33}, {5, 1}, {129, 100}, {300, 257}, {40, 2500}})
        for (int64_t n : {1, 3, 9, 70}) checkMatmul(dt, sh.first, sh.second, n, dt == DType::NF4 ? 64 : 0, path);
  const int64_t nf4Cases[][3] = {{37, 33, 64}, {9, 96, 64}, {5, 96, 48}, {13, 77, 7}, {6, 512, 256}};
  for (const auto& c : nf4Cases)
    for (int64_t n : {1, 5, 20}) checkMatmul(DType::NF4, c[0], c[1], n, c[2], 0);
  checkLora();
  checkOps();
  std::printf("check: %d failure(s)\n", failures);
  return failures ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// time

struct Timer {
  cudaEvent_t a, b;
  Timer() {
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
  }
  // Median milliseconds of `reps` runs of fn(rep), after `warm` warm-up runs.
  template <class F>
  double median(F fn, int reps = 30, int warm = 5) {
    if (gSmoke) reps = 1, warm = 0;
    for (int i = 0; i < warm; i++) fn(i);
    std::vector<float> ms(reps);
    for (int i = 0; i < reps; i++) {
      CK(cudaEventRecord(a));
      fn(i);
      CK(cudaEventRecord(b));
      CK(cudaEventSynchronize(b));
      CK(cudaGetLastError());
      CK(cudaEventElapsedTime(&ms[i], a, b));
    }
    std::sort(ms.begin(), ms.end());
    return ms[reps / 2];
  }
};

FILE* tsv = nullptr;
double copyGBs = 0;

void report(const char* what, double ms, double bytes, double flops) {
  const double gbs = bytes / ms / 1e6;
  const double floorMs = bytes / (copyGBs * 1e6);
  std::printf("%-52s %9.4f ms %8.1f GB/s %7.2f TFLOP/s  floor %8.4f ms  (%.0f%% of copy rate)\n", what, ms, gbs, flops / ms / 1e9, floorMs,
              100 * gbs / copyGBs);
  if (tsv) std::fprintf(tsv, "%s\t%.6f\t%.3f\t%.4f\t%.6f\n", what, ms, gbs, flops / ms / 1e9, floorMs);
}

int runTime(const char* tsvPath) {
  if (tsvPath) {
    tsv = std::fopen(tsvPath, "w");
    if (tsv) std::fprintf(tsv, "case\tms\tGB/s\tTFLOP/s\tfloor_ms\n");
  }
  cudaDeviceProp p{};
  CK(cudaGetDeviceProperties(&p, 0));
  const size_t l2 = static_cast<size_t>(p.l2CacheSize);
  Timer tm;
  {  // the copy ceiling: 2 GiB device to device, bytes read + written
    const size_t bytes = size_t{1} << (gSmoke ? 20 : 31);
    void *a = nullptr, *b = nullptr;
    dmalloc(&a, bytes);
    dmalloc(&b, bytes);
    CK(cudaMemset(a, 1, bytes));
    const double ms = tm.median([&](int) { CK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); }, 10, 2);
    copyGBs = 2.0 * bytes / ms / 1e6;
    std::printf("%s, %d SMs, L2 %zu MB: device-to-device copy %.0f GB/s (read + write)\n", p.name, p.multiProcessorCount, l2 >> 20, copyGBs);
    cudaFree(a);
    cudaFree(b);
  }
  const char* names[] = {"f32", "bf16", "f16", "nf4"};
  // Decode GEMV and prefill GEMM on Llama-like shapes; weights rotated through ≥ 4× L2.
  for (const auto& sh : std::vector<std::pair<int64_t, int64_t>>{{4096, 4096}, {14336, 4096}}) {
    const int64_t out = sh.first / gScale, in = sh.second / gScale;
    for (DType dt : {DType::F32, DType::BF16, DType::F16, DType::NF4}) {
      TestWeight probe = makeWeight(dt, out, in, 1, 64, false);
      const size_t copies = std::min<size_t>(16, std::max<size_t>(1, (4 * l2) / probe.bytes + 1));
      std::vector<TestWeight> ws;
      ws.push_back(probe);
      for (size_t c = 1; c < copies; c++) ws.push_back(makeWeight(dt, out, in, 1 + c, 64, false));
      for (int64_t n : {int64_t{1}, int64_t{4}, int64_t{8}, 512 / gScale}) {
        std::vector<float> x(n * in);
        Rng rng(n);
        for (auto& v : x) v = rng.sym();
        float* dx = uploadRows(x, n, in);
        float* dy = nullptr;
        dmalloc(&dy, n * out * 4);
        const double ms = tm.median([&](int i) { CK(launchMatmul(ws[i % copies].w, dx, dy, n, nullptr)); });
        char label[96];
        std::snprintf(label, sizeof label, "matmul %s %lldx%lld n=%lld (%s)", names[static_cast<int>(dt)], (long long)out, (long long)in, (long long)n,
                      n <= kGemvMaxRows ? "gemv" : "gemm");
        report(label, ms, static_cast<double>(probe.bytes) + 4.0 * n * (in + out), 2.0 * n * out * in);
        cudaFree(dx);
        cudaFree(dy);
      }
      for (auto& w : ws) freeWeight(w);
    }
  }
  {  // LoRA: a decode batch of 64 rows over 16 rank-16 adapters, and a 512-row prefill in 4 segments of rank 64
    const int64_t in = 4096 / gScale, out = 4096 / gScale;
    const int loraCases[][3] = {{64, 16, 16}, {512, 4, 64}};  // rows, adapters, rank
    for (bool bf16 : {false, true})
      for (const auto& c : loraCases) {
        const int64_t rows = c[0];
        const int adapters = c[1], rank = c[2];
        const size_t es = bf16 ? 2 : 4;
        std::vector<LoraDesc> descs;
        std::vector<void*> frees;
        for (int a = 0; a < adapters; a++) {
          void *A = nullptr, *Bt = nullptr;
          dmalloc(&A, rank * padK(in) * es);
          dmalloc(&Bt, rank * out * es);
          CK(cudaMemset(A, 0x3c, rank * padK(in) * es));  // small finite values in f32 and bf16
          CK(cudaMemset(Bt, 0x3c, rank * out * es));
          LoraDesc d{};
          d.A = A;
          d.Bt = Bt;
          d.rowScale = nullptr;
          d.rank = rank;
          d.bf16 = bf16 ? 1 : 0;
          descs.push_back(d);
          frees.push_back(A);
          frees.push_back(Bt);
        }
        std::vector<int32_t> order;
        std::vector<LoraItem> items;
        const bool decode = rows == 64;
        for (int a = 0; a < adapters; a++) {
          const int first = static_cast<int>(order.size());
          for (int64_t i = 0; i < rows; i++)
            if ((decode ? i % adapters : i / (rows / adapters)) == a) order.push_back(static_cast<int32_t>(i));
          for (int r = first; r < static_cast<int>(order.size()); r += kLoraRows)
            items.push_back({a, r, std::min(kLoraRows, static_cast<int>(order.size()) - r)});
        }
        LoraDesc* dd = devUpload(descs);
        LoraItem* di = devUpload(items);
        int32_t* dord = devUpload(order);
        std::vector<float> x(rows * in, 0.01f);
        float* dx = uploadRows(x, rows, in);
        float *dy = nullptr, *dt = nullptr;
        dmalloc(&dy, rows * out * 4);
        CK(cudaMemset(dy, 0, rows * out * 4));
        dmalloc(&dt, rows * rank * 4);
        const double ms = tm.median(
            [&](int) { CK(launchLora(dd, di, static_cast<int32_t>(items.size()), dord, dx, in, dy, out, dt, rank, nullptr)); });
        char label[96];
        std::snprintf(label, sizeof label, "lora %s %lld rows, %d adapters r=%d, 4096->4096", bf16 ? "bf16" : "f32", (long long)rows, adapters, rank);
        const double bytes = adapters * rank * (padK(in) + out) * double(es) + rows * (in + 2.0 * out) * 4;
        report(label, ms, bytes, 2.0 * rows * rank * (in + out));
        for (void* f : frees) cudaFree(f);
        cudaFree(dd), cudaFree(di), cudaFree(dord), cudaFree(dx), cudaFree(dy), cudaFree(dt);
      }
  }
  {  // attention: decode over long caches and a prefill
    const int64_t attnCases[][5] = {{1, 4095, 32, 8, 128}, {8, 4088, 32, 8, 128}, {512, 0, 32, 8, 128}};  // nT, start, heads, kvHeads, hd
    for (const auto& c : attnCases) {
      const int64_t nT = gSmoke ? std::min<int64_t>(c[0], 2) : c[0], start = c[1] / gScale, heads = c[2] / (gSmoke ? 8 : 1), kvh = c[3] / (gSmoke ? 4 : 1), hd = c[4];
      const int64_t len = start + nT, kvDim = kvh * hd;
      float *dq, *dk, *dv, *dout;
      dmalloc(&dq, nT * heads * hd * 4);
      dmalloc(&dout, nT * heads * hd * 4);
      dmalloc(&dk, len * kvDim * 4);
      dmalloc(&dv, len * kvDim * 4);
      CK(cudaMemset(dq, 0x3c, nT * heads * hd * 4));
      CK(cudaMemset(dk, 0x3c, len * kvDim * 4));
      CK(cudaMemset(dv, 0x3c, len * kvDim * 4));
      const double ms = tm.median([&](int) { CK(launchAttention(dout, dq, dk, dv, nT, start, heads, kvh, hd, nullptr)); });
      char label[96];
      std::snprintf(label, sizeof label, "attention nT=%lld len=%lld heads=%lld/%lld hd=%lld", (long long)nT, (long long)len, (long long)heads,
                    (long long)kvh, (long long)hd);
      double keys = 0;
      for (int64_t t = 0; t < nT; t++) keys += start + t + 1;
      report(label, ms, 2.0 * len * kvDim * 4 + 2.0 * nT * heads * hd * 4, 4.0 * keys * heads * hd);
      cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(dout);
    }
  }
  {  // rmsnorm and siluMul at a prefill size
    const int64_t n = 512 / gScale, dim = 4096 / gScale, len = 512 * 14336 / gScale;
    float *dx, *dy, *dw, *dg, *du;
    dmalloc(&dx, n * dim * 4);
    dmalloc(&dy, n * dim * 4);
    dmalloc(&dw, dim * 4);
    dmalloc(&dg, len * 4);
    dmalloc(&du, len * 4);
    CK(cudaMemset(dx, 0x3c, n * dim * 4));
    CK(cudaMemset(dw, 0x3c, dim * 4));
    CK(cudaMemset(dg, 0x3c, len * 4));
    CK(cudaMemset(du, 0x3c, len * 4));
    report("rmsnorm 512x4096", tm.median([&](int) { CK(launchRmsnorm(dy, dx, n, dim, dw, 1e-5f, nullptr)); }), 2.0 * n * dim * 4, 3.0 * n * dim);
    report("siluMul 512x14336", tm.median([&](int) { CK(launchSiluMul(dg, du, len, nullptr)); }), 3.0 * len * 4, 5.0 * len);
    cudaFree(dx), cudaFree(dy), cudaFree(dw), cudaFree(dg), cudaFree(du);
  }
  if (tsv) std::fclose(tsv);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "check";
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::fprintf(stderr, "no CUDA device\n");
    return 3;
  }
  if (mode == "check") return runCheck();
  if (mode == "time") return runTime(argc > 2 ? argv[2] : nullptr);
  if (mode == "time-smoke") {
    gSmoke = true;
    gScale = 32;
    return runTime(argc > 2 ? argv[2] : nullptr);
  }
  std::fprintf(stderr, "usage: bench check | bench time [out.tsv] | bench time-smoke\n");
  return 2;
}
