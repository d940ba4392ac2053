#include "lora.h"

#include <algorithm>

#include "dispatch.h"
#include "matmul.h"
#include "thread_pool.h"

namespace le {
namespace {

// Rows of one slot handled by one task: large segments split so both phases spread over threads.
constexpr int64_t kItemRows = 16;
constexpr int64_t kExpandCols = 256;

// Asks for a whole (small) factor matrix at once, into L2: a rank-16 bf16 factor is ~24 KB, too
// short for the hardware prefetcher to ramp up before it is consumed (measured: bf16 factors
// stream ~25% faster with it, f32 ones ~10% slower, so only 16-bit factors get it).
void prefetchRange(const void* p, size_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off, 0, 2);
}

struct Item {
  int32_t slot;
  int64_t first;  // index into the grouped row order
  int64_t count;
};

}  // namespace

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
  int64_t maxRank = 0;
  std::vector<Item> items;
  for (int64_t s = 0; s < nh; s++) {
    const int64_t rows = start[s + 1] - start[s];
    if (rows == 0) continue;
    maxRank = std::max(maxRank, handles[s]->rank);
    for (int64_t r = 0; r < rows; r += kItemRows) items.push_back({static_cast<int32_t>(s), start[s] + r, std::min(kItemRows, rows - r)});
  }
  // Row pointers in grouped order: the kernels gather x and scatter y through them.
  std::vector<float> t(static_cast<size_t>(active * maxRank));
  std::vector<const float*> xr(static_cast<size_t>(active));
  std::vector<float*> yr(static_cast<size_t>(active));
  std::vector<float*> tr(static_cast<size_t>(active));
  for (int64_t k = 0; k < active; k++) {
    xr[k] = x + order[k] * h0.in;
    yr[k] = y + order[k] * h0.out;
    tr[k] = t.data() + k * maxRank;
  }
  const KernelSet& ks = kernels();
  ThreadPool& tp = pool();
  const int64_t nItems = static_cast<int64_t>(items.size());
  auto shrink = [&](const Item& it) {
    const LoraNative& h = *handles[it.slot];
    matmulSerial(ks, h.A.view(), xr.data() + it.first, tr.data() + it.first, it.count, 0, h.rank);
  };
  auto expand = [&](const Item& it, int64_t j0, int64_t j1) {
    const LoraNative& h = *handles[it.slot];
    ks.loraExpand(h.Bt.view(), tr.data() + it.first, yr.data() + it.first, static_cast<int>(it.count), j0, j1, h.scale());
  };
  if (nItems >= 2 * tp.threads()) {
    // Enough groups to keep every thread busy: each task does its group's shrink and expand
    // back to back (one pass over the pool, factors read while hot).
    tp.run(nItems, [&](int64_t i, int) {
      const LoraNative& h = *handles[items[i].slot];
      if (h.Bt.dtype != DType::F32) prefetchRange(h.Bt.data.as<void>(), h.Bt.bytes());  // arrives during the shrink
      shrink(items[i]);
      expand(items[i], 0, h0.out);
    });
    return;
  }
  // Few groups (one long segment, or one row): shrink per group, then split the expand over
  // output columns as well.
  tp.run(nItems, [&](int64_t i, int) { shrink(items[i]); });
  const int64_t colTasks = (h0.out + kExpandCols - 1) / kExpandCols;
  tp.run(nItems * colTasks, [&](int64_t task, int) {
    const int64_t j0 = (task % colTasks) * kExpandCols;
    expand(items[task / colTasks], j0, std::min(h0.out, j0 + kExpandCols));
  });
}

}  // namespace le
