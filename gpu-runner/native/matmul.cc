#include "matmul.h"

#include <algorithm>
#include <cstring>

#include "dispatch.h"
#include "scratch.h"
#include "thread_pool.h"

namespace le {
namespace {

constexpr int64_t kPanel = 32;       // weight rows converted and reused together
constexpr int64_t kRowBlock = 128;   // activation rows sharing one converted panel
constexpr int64_t kMaxKc = 2048;     // `in` beyond this is cut into kKc slices (L1/L2 reuse)
constexpr int64_t kKc = 1024;

inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }


inline int64_t pad16(int64_t k) { return (k + 15) / 16 * 16; }

void gemmSerial(const KernelSet& ks, const WeightView& w, const float* const* x, float* const* y, int64_t m, int64_t j0, int64_t j1) {
  const int64_t K = w.in;
  const int64_t kc = K <= kMaxKc ? K : kKc;
  // Rows are copied into aligned, zero-padded rows (multiples of 16 floats): the micro-kernel
  // runs without a ragged tail and its loads never split cache lines. f32 weights are read in
  // place when their rows already have that shape.
  const int64_t ldx = pad16(K);
  const bool direct = w.dtype == DType::F32 && K % 16 == 0;
  for (int64_t i0 = 0; i0 < m; i0 += kRowBlock) {
    const int64_t mb = std::min(kRowBlock, m - i0);
    float* xp = scratch(kScratchX).floats(static_cast<size_t>(mb * ldx));
    const float* xr[kRowBlock];
    for (int64_t i = 0; i < mb; i++) {
      float* row = xp + i * ldx;
      std::memcpy(row, x[i0 + i], static_cast<size_t>(K) * sizeof(float));
      std::fill(row + K, row + ldx, 0.0f);
      xr[i] = row;
    }
    for (int64_t p0 = j0; p0 < j1; p0 += kPanel) {
      const int64_t nr = std::min(kPanel, j1 - p0);
      float* acc = scratch(kScratchAcc).floats(static_cast<size_t>(mb * nr));
      std::memset(acc, 0, static_cast<size_t>(mb * nr) * sizeof(float));
      for (int64_t k0 = 0; k0 < K; k0 += kc) {
        const int64_t kcc = std::min(kc, K - k0);
        const int64_t kpad = pad16(kcc);
        const float* wp;
        int64_t ldw;
        if (direct) {
          wp = static_cast<const float*>(w.data) + p0 * K + k0;
          ldw = K;
        } else {
          ldw = kpad;
          float* buf = scratch(kScratchWeights).floats(static_cast<size_t>(nr * ldw));
          for (int64_t r = 0; r < nr; r++) {
            ks.convert(w, p0 + r, 1, k0, kcc, buf + r * ldw);
            std::fill(buf + r * ldw + kcc, buf + (r + 1) * ldw, 0.0f);
          }
          wp = buf;
        }
        ks.gemm(xr, k0, static_cast<int>(mb), wp, ldw, static_cast<int>(nr), kpad, acc, nr);
      }
      for (int64_t i = 0; i < mb; i++) std::memcpy(y[i0 + i] + p0, acc + i * nr, static_cast<size_t>(nr) * sizeof(float));
    }
  }
}

}  // namespace

bool gemvSupports(const KernelSet&, const WeightView& w) {
  if (w.dtype != DType::NF4) return true;
  const int64_t bs = w.blocksize;
  return bs >= 8 && (bs & (bs - 1)) == 0 && w.in % bs == 0;
}

void matmulSerial(const KernelSet& ks, const WeightView& w, const float* const* x, float* const* y, int64_t m, int64_t j0, int64_t j1,
                  const float* prep) {
  if (m <= 0 || j1 <= j0) return;
  if (m <= kGemvMaxRows && gemvSupports(ks, w)) {
    for (int64_t i0 = 0; i0 < m; i0 += kGemvRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kGemvRows, m - i0));
      const float* p = prep ? prep + ks.gemvPrepSize(w, static_cast<int>(i0)) : nullptr;
      if (!p && ks.gemvPrepSize(w, rows) > 0) {
        float* buf = scratch(kScratchX).floats(static_cast<size_t>(ks.gemvPrepSize(w, rows)));
        ks.gemvPrepare(w, x + i0, rows, buf);
        p = buf;
      }
      ks.gemv(w, x + i0, y + i0, rows, j0, j1, p);
    }
    return;
  }
  gemmSerial(ks, w, x, y, m, j0, j1);
}

void matmulParallel(const WeightView& w, const float* const* x, float* const* y, int64_t m) {
  if (m <= 0 || w.out <= 0) return;
  const KernelSet& ks = kernels();
  ThreadPool& tp = pool();
  const int64_t threads = tp.threads();
  const bool gemv = m <= kGemvMaxRows && gemvSupports(ks, w);
  // Column chunks: a few tasks per thread to balance, long enough that each streams a good
  // stretch of contiguous weight rows (short tasks pay a prefetch ramp-up each).
  const int64_t align = gemv ? 4 : kPanel;
  int64_t chunk = ceilDiv(w.out, threads * 4);
  chunk = std::clamp<int64_t>(ceilDiv(chunk, align) * align, gemv ? 32 : align, gemv ? 1024 : 256);
  const int64_t colTasks = ceilDiv(w.out, chunk);
  const int64_t rowBlock = gemv ? m : kRowBlock;
  const int64_t rowTasks = ceilDiv(m, rowBlock);
  // The GEMV's activation layout is prepared once here, not once per task.
  const float* prep = nullptr;
  if (gemv && ks.gemvPrepSize(w, static_cast<int>(m)) > 0) {
    float* buf = scratch(kScratchPrep).floats(static_cast<size_t>(ks.gemvPrepSize(w, static_cast<int>(m))));
    ks.gemvPrepare(w, x, static_cast<int>(m), buf);
    prep = buf;
  }
  tp.run(colTasks * rowTasks, [&](int64_t t, int) {
    const int64_t r = t / colTasks;
    const int64_t c = t % colTasks;
    const int64_t i0 = r * rowBlock;
    const int64_t j0 = c * chunk;
    matmulSerial(ks, w, x + i0, y + i0, std::min(rowBlock, m - i0), j0, std::min(w.out, j0 + chunk), prep);
  });
}

Scratch& scratch(ScratchSlot slot) {
  thread_local Scratch s[kScratchCount];
  return s[slot];
}

}  // namespace le
