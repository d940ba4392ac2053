#include "ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "dispatch.h"
#include "scratch.h"
#include "thread_pool.h"

namespace le {
namespace {

// Below this much work a job runs on the calling thread: waking workers would cost more.
constexpr int64_t kParallelMin = 1 << 15;

template <class F>
void forChunks(int64_t count, int64_t costPerItem, F&& fn) {
  if (count <= 0) return;
  ThreadPool& tp = pool();
  const int64_t threads = tp.threads();
  if (threads == 1 || count * costPerItem < kParallelMin) {
    fn(0, count);
    return;
  }
  const int64_t chunks = std::min<int64_t>(count, threads * 4);
  const int64_t per = (count + chunks - 1) / chunks;
  tp.run((count + per - 1) / per, [&](int64_t c, int) { fn(c * per, std::min(count, (c + 1) * per)); });
}

}  // namespace

void rmsnorm(float* y, const float* x, int64_t n, int64_t dim, const float* weight, float eps) {
  forChunks(n, dim, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      // Sum of squares in double, four chains so the adds overlap.
      double s4[4] = {0, 0, 0, 0};
      int64_t j = 0;
      for (; j + 4 <= dim; j += 4)
        for (int c = 0; c < 4; c++) s4[c] += static_cast<double>(xr[j + c]) * xr[j + c];
      for (; j < dim; j++) s4[0] += static_cast<double>(xr[j]) * xr[j];
      const double ss = (s4[0] + s4[1]) + (s4[2] + s4[3]);
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
      for (j = 0; j < dim; j++) yr[j] = xr[j] * inv * weight[j];
    }
  });
}

void rope(float* x, int64_t n, int64_t heads, int64_t headDim, const int32_t* positions, double theta) {
  const int64_t half = headDim / 2;
  std::vector<double> invFreq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; i++) invFreq[i] = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(headDim));
  forChunks(n, heads * headDim * 2, [&](int64_t r0, int64_t r1) {
    std::vector<double> cs(static_cast<size_t>(2 * half));
    for (int64_t r = r0; r < r1; r++) {
      const double pos = positions[r];
      for (int64_t i = 0; i < half; i++) {
        const double a = pos * invFreq[i];
        cs[2 * i] = std::cos(a);
        cs[2 * i + 1] = std::sin(a);
      }
      float* row = x + r * heads * headDim;
      for (int64_t h = 0; h < heads; h++) {
        float* v = row + h * headDim;
        for (int64_t i = 0; i < half; i++) {
          const double c = cs[2 * i], s = cs[2 * i + 1];
          const double x0 = v[i], x1 = v[i + half];
          v[i] = static_cast<float>(x0 * c - x1 * s);
          v[i + half] = static_cast<float>(x1 * c + x0 * s);
        }
      }
    }
  });
}

void siluMul(float* gate, const float* up, int64_t len) {
  const KernelSet& ks = kernels();
  forChunks(len, 4, [&](int64_t i0, int64_t i1) { ks.siluMul(gate + i0, up + i0, i1 - i0); });
}

void attention(float* out, const float* q, const float* kCache, const float* vCache, AttentionShape s) {
  const KernelSet& ks = kernels();
  const int64_t hd = s.headDim;
  const int64_t kvDim = s.kvHeads * hd;
  const int64_t group = s.heads / s.kvHeads;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const int64_t tasks = s.nTokens * s.heads;
  // Cost ~ keys visited × headDim × 2 (scores and values).
  forChunks(tasks, (s.start + s.nTokens) * hd * 2, [&](int64_t t0, int64_t t1) {
    for (int64_t task = t0; task < t1; task++) {
      const int64_t tok = task / s.heads;
      const int64_t h = task % s.heads;
      const int64_t len = s.start + tok + 1;  // causal: keys 0..start+tok
      const int64_t kvOff = (h / group) * hd;
      const int64_t qOff = (tok * s.heads + h) * hd;
      float* p = scratch(kScratchScores).floats(static_cast<size_t>(len));
      ks.attendHead(q + qOff, kCache + kvOff, vCache + kvOff, len, kvDim, hd, scale, out + qOff, p);
    }
  });
}

void fuseRows(float* w, int64_t out, int64_t in, const float* b, const float* a, int64_t r, const float* src) {
  const KernelSet& ks = kernels();
  const WeightView av{DType::F32, r, in, a, nullptr, nullptr, 0};
  // Row blocks: a block's rows share each row of a while it is in cache.
  constexpr int64_t kRows = 8;
  forChunks((out + kRows - 1) / kRows, kRows * r * in, [&](int64_t c0, int64_t c1) {
    const float* ap[kRows];
    float* yp[kRows];
    for (int64_t c = c0; c < c1; c++) {
      const int64_t r0 = c * kRows;
      const int m = static_cast<int>(std::min(kRows, out - r0));
      if (src) std::memcpy(w + r0 * in, src + r0 * in, static_cast<size_t>(m * in) * sizeof(float));
      for (int i = 0; i < m; i++) {
        ap[i] = b + (r0 + i) * r;
        yp[i] = w + (r0 + i) * in;
      }
      ks.rowsTimes(av, ap, yp, nullptr, m, 0, in);
    }
  });
}

}  // namespace le
