#include "lora.h"

#include <algorithm>
#include <cstring>

#include "dispatch.h"
#include "matmul.h"
#include "thread_pool.h"

namespace le {
namespace {

// Rows of one slot handled by one task: large segments split so both phases spread over threads.
constexpr int64_t kItemRows = 16;
// Output columns per expand task at most (then balanced over the threads, in whole sparse blocks).
constexpr int64_t kExpandCols = 256;
// Rank columns of one shrink task when few groups share the threads (rank 256 splits in 4).
constexpr int64_t kShrinkCols = 64;

// Asks for a whole (small) factor matrix at once, into L2: a rank-16 bf16 factor is ~24 KB, too
// short for the hardware prefetcher to ramp up before it is consumed (measured: bf16 factors
// stream ~25% faster with it, f32 ones ~10% slower, so only 16-bit factors get it).
void prefetchRange(const void* p, size_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off, 0, 2);
}

// Column chunks over [0, out): a multiple of the threads, at most kExpandCols wide, whole
// kSparseLanes blocks (768 columns on 2 threads: 4 × 192, not 256 + 256 + 256).
int64_t columnChunk(int64_t out, int64_t threads) {
  const int64_t tasks = threads * ((out + threads * kExpandCols - 1) / (threads * kExpandCols));
  const int64_t chunk = (out + tasks - 1) / tasks;
  return (chunk + kSparseLanes - 1) / kSparseLanes * kSparseLanes;
}

struct Item {
  int32_t slot;
  int64_t first;  // index into the grouped row order
  int64_t count;
};

// y[:, j0:j1) = rowScale ⊙ y + (t B)[:, j0:j1) for a dense or sparse B.
void expand(const KernelSet& ks, const LoraNative& h, const float* const* t, float* const* y, int64_t rows, int64_t j0, int64_t j1) {
  if (h.layout == LoraLayout::Sparse) {
    ks.loraExpandSparse(h.sparse.view(), t, y, static_cast<int>(rows), j0, j1, h.scale());
  } else {
    ks.loraExpand(h.Bt.view(), t, y, static_cast<int>(rows), j0, j1, h.scale());
  }
}

// Dense and sparse slots: shrink T = X Aᵀ per item, then the expand.
void applyLora(const std::vector<Item>& items, const std::vector<const LoraNative*>& handles, const float* const* xr, float* const* yr,
               int64_t out) {
  int64_t maxRank = 0;
  for (const Item& it : items) maxRank = std::max(maxRank, handles[it.slot]->rank);
  int64_t active = 0;
  for (const Item& it : items) active = std::max(active, it.first + it.count);
  std::vector<float> t(static_cast<size_t>(active * maxRank));
  std::vector<float*> tr(static_cast<size_t>(active));
  for (int64_t k = 0; k < active; k++) tr[k] = t.data() + k * maxRank;
  const KernelSet& ks = kernels();
  ThreadPool& tp = pool();
  const int64_t nItems = static_cast<int64_t>(items.size());
  if (nItems >= 2 * tp.threads()) {
    // Enough groups to keep every thread busy: each task does its group's shrink and expand
    // back to back (one pass over the pool, factors read while hot).
    tp.run(nItems, [&](int64_t i, int) {
      const Item& it = items[i];
      const LoraNative& h = *handles[it.slot];
      // 16-bit factors are asked for at once: they arrive during the shrink.
      if (h.layout == LoraLayout::Dense && h.Bt.dtype != DType::F32) prefetchRange(h.Bt.data.as<void>(), h.Bt.bytes());
      matmulSerial(ks, h.A.view(), xr + it.first, tr.data() + it.first, it.count, 0, h.rank);
      expand(ks, h, tr.data() + it.first, yr + it.first, it.count, 0, out);
    });
    return;
  }
  // Few groups (one long segment, or one row): split the shrink over rank columns and the
  // expand over output columns as well.
  struct Part {
    int64_t item, c0, c1;
  };
  std::vector<Part> parts;
  for (int64_t i = 0; i < nItems; i++) {
    const int64_t rank = handles[items[i].slot]->rank;
    for (int64_t c = 0; c < rank; c += kShrinkCols) parts.push_back({i, c, std::min(rank, c + kShrinkCols)});
  }
  tp.run(static_cast<int64_t>(parts.size()), [&](int64_t p, int) {
    const Item& it = items[parts[p].item];
    matmulSerial(ks, handles[it.slot]->A.view(), xr + it.first, tr.data() + it.first, it.count, parts[p].c0, parts[p].c1);
  });
  const int64_t chunk = columnChunk(out, tp.threads());
  const int64_t colTasks = (out + chunk - 1) / chunk;
  tp.run(nItems * colTasks, [&](int64_t task, int) {
    const Item& it = items[task / colTasks];
    const int64_t j0 = (task % colTasks) * chunk;
    expand(ks, *handles[it.slot], tr.data() + it.first, yr + it.first, it.count, j0, std::min(out, j0 + chunk));
  });
}

// The rows of every VeRA slot over one projection.
struct VeraGroup {
  const VeraProjNative* proj;
  std::vector<int64_t> rows;             // grouped-order indices
  std::vector<const LoraNative*> hs;     // each row's handle
};

// VeRA, per projection: T = X A_s[:, :in]ᵀ for all the group's rows at once (whatever their
// adapter), then one virtual row per (row, term) with t' = λ_d ⊙ t, and y += λ_b ⊙ (t' B_s[:out]ᵀ)
// for all virtual rows at once: both products read the shared matrices once per row tile.
void applyVera(const std::vector<VeraGroup>& groups, const float* const* xr, float* const* yr, int64_t in, int64_t out) {
  const KernelSet& ks = kernels();
  ThreadPool& tp = pool();
  const size_t ng = groups.size();
  std::vector<std::vector<float>> t(ng), tv(ng);
  std::vector<std::vector<const float*>> gx(ng), gtv(ng), gos(ng);
  std::vector<std::vector<float*>> gt(ng), gy(ng);
  struct Part {
    size_t g;
    int64_t r0, rows, c0, c1;
  };
  std::vector<Part> parts;
  for (size_t g = 0; g < ng; g++) {
    const int64_t rank = groups[g].proj->rank;
    const int64_t rows = static_cast<int64_t>(groups[g].rows.size());
    t[g].assign(static_cast<size_t>(rows * rank), 0.0f);  // the shrink accumulates into zero
    for (int64_t i = 0; i < rows; i++) {
      gx[g].push_back(xr[groups[g].rows[i]]);
      gt[g].push_back(t[g].data() + i * rank);
    }
    for (int64_t r0 = 0; r0 < rows; r0 += kItemRows)
      for (int64_t c = 0; c < rank; c += kShrinkCols)
        parts.push_back({g, r0, std::min(kItemRows, rows - r0), c, std::min(rank, c + kShrinkCols)});
  }
  tp.run(static_cast<int64_t>(parts.size()), [&](int64_t p, int) {
    const Part& pt = parts[p];
    WeightView at = groups[pt.g].proj->At.view();  // [maxIn, rank]: the leading `in` rows are A_s[:, :in]ᵀ
    at.out = in;
    ks.rowsTimes(at, gx[pt.g].data() + pt.r0, gt[pt.g].data() + pt.r0, nullptr, static_cast<int>(pt.rows), pt.c0, pt.c1);
  });
  for (size_t g = 0; g < ng; g++) {
    const int64_t rank = groups[g].proj->rank;
    int64_t virt = 0;
    for (const LoraNative* h : groups[g].hs) virt += h->terms;
    tv[g].resize(static_cast<size_t>(virt * rank));
    int64_t v = 0;
    for (size_t i = 0; i < groups[g].hs.size(); i++) {
      const LoraNative& h = *groups[g].hs[i];
      for (int64_t k = 0; k < h.terms; k++, v++) {
        const float* ld = h.lambdaD.as<float>() + k * rank;
        float* dst = tv[g].data() + v * rank;
        for (int64_t r = 0; r < rank; r++) dst[r] = ld[r] * t[g][i * rank + r];
        gtv[g].push_back(dst);
        gos[g].push_back(h.lambdaB.as<float>() + k * out);
        gy[g].push_back(yr[groups[g].rows[i]]);
      }
    }
  }
  // Tasks split columns only: the virtual rows of one output row must not run concurrently.
  const int64_t chunk = columnChunk(out, tp.threads());
  const int64_t colTasks = (out + chunk - 1) / chunk;
  tp.run(static_cast<int64_t>(ng) * colTasks, [&](int64_t task, int) {
    const size_t g = static_cast<size_t>(task / colTasks);
    const int64_t j0 = (task % colTasks) * chunk;
    const WeightView bt = groups[g].proj->Bt.view();  // [rank, maxOut]: columns j < out are B_s[:out]ᵀ
    ks.rowsTimes(bt, gtv[g].data(), gy[g].data(), gos[g].data(), static_cast<int>(gtv[g].size()), j0, std::min(out, j0 + chunk));
  });
}

}  // namespace

bool sparseExpandPays(const KernelSet& ks, int64_t rank, int64_t out, int64_t slots) {
  if (rank > 256) return false;
  // Cost of one padded slot relative to one dense rank step over the same kSparseLanes outputs,
  // fitted on decode with factors cold in L2 (as in the engine, where every token streams the
  // base weights through L2 between two uses of a module's factors): the sparse form wins while
  // its fill (slots / rank·blocks) is below ~0.55 on AVX-512, ~0.45 on AVX2 and ~0.3 on the
  // portable set (its lookups are scalar loads). Measured with bench/adapters.bench.ts.
  const double slotCost = std::strcmp(ks.name, "avx512") == 0 ? 1.8 : std::strcmp(ks.name, "avx2") == 0 ? 2.2 : 3.3;
  const int64_t blocks = (out + kSparseLanes - 1) / kSparseLanes;
  return static_cast<double>(slots) * slotCost < static_cast<double>(rank * blocks);
}

void loraApply(float* y, const float* x, int64_t n, const int32_t* slots, const std::vector<const LoraNative*>& handles) {
  const int64_t nh = static_cast<int64_t>(handles.size());
  if (n <= 0 || nh == 0) return;
  // Group rows by slot, keeping row order inside a slot (a counting sort).
  std::vector<int64_t> start(static_cast<size_t>(nh) + 1, 0);
  for (int64_t i = 0; i < n; i++)
    if (slots[i] >= 0) start[static_cast<size_t>(slots[i]) + 1]++;
  for (int64_t s = 0; s < nh; s++) start[s + 1] += start[s];
  const int64_t active = start[nh];
  if (active == 0) return;
  std::vector<int64_t> order(static_cast<size_t>(active));
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < n; i++)
      if (slots[i] >= 0) order[fill[slots[i]]++] = i;
  }
  const LoraNative& h0 = *handles[0];
  // Row pointers in grouped order: the kernels gather x and scatter y through them.
  std::vector<const float*> xr(static_cast<size_t>(active));
  std::vector<float*> yr(static_cast<size_t>(active));
  for (int64_t k = 0; k < active; k++) {
    xr[k] = x + order[k] * h0.in;
    yr[k] = y + order[k] * h0.out;
  }
  // Dense and sparse slots become items; VeRA slots join their projection's group.
  std::vector<Item> items;
  std::vector<VeraGroup> groups;
  for (int64_t s = 0; s < nh; s++) {
    const int64_t rows = start[s + 1] - start[s];
    if (rows == 0) continue;
    const LoraNative* h = handles[s];
    if (h->layout != LoraLayout::Vera) {
      for (int64_t r = 0; r < rows; r += kItemRows) items.push_back({static_cast<int32_t>(s), start[s] + r, std::min(kItemRows, rows - r)});
      continue;
    }
    auto g = std::find_if(groups.begin(), groups.end(), [&](const VeraGroup& v) { return v.proj == h->proj.get(); });
    if (g == groups.end()) g = groups.insert(groups.end(), VeraGroup{h->proj.get(), {}, {}});
    for (int64_t k = start[s]; k < start[s + 1]; k++) {
      g->rows.push_back(k);
      g->hs.push_back(h);
    }
  }
  // Each row has one slot, so the two passes write disjoint rows of y.
  if (!items.empty()) applyLora(items, handles, xr.data(), yr.data(), h0.out);
  if (!groups.empty()) applyVera(groups, xr.data(), yr.data(), h0.in, h0.out);
}

}  // namespace le
