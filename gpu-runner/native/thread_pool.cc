#include "thread_pool.h"

#include <chrono>
#include <cstdlib>

#if defined(__linux__)
#include <sched.h>
#endif

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#define LE_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define LE_PAUSE() asm volatile("yield")
#else
#define LE_PAUSE() ((void)0)
#endif

namespace le {
namespace {

constexpr int kTaskBits = 24;
constexpr uint64_t kTaskMask = (uint64_t{1} << kTaskBits) - 1;

inline uint64_t tasksOf(uint64_t w) { return (w >> kTaskBits) & kTaskMask; }
inline uint64_t nextOf(uint64_t w) { return w & kTaskMask; }
inline bool hasWork(uint64_t w) { return nextOf(w) < tasksOf(w); }

int64_t envInt(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  return (end && *end == '\0' && x >= 0) ? x : fallback;
}

int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

ThreadPool::ThreadPool(int threads) : spinNs_(envInt("LORA_EDGE_SPIN_US", 200) * 1000) { start(threads); }

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::setThreads(int n) {
  if (n < 1) n = 1;
  if (n > kMaxThreads) n = kMaxThreads;
  std::lock_guard<std::mutex> lock(runMutex_);
  if (n == threads()) return;
  stop();
  start(n);
}

void ThreadPool::start(int n) {
  stop_.store(false);
  threads_.store(n);
  workers_.reserve(n - 1);
  for (int i = 1; i < n; i++) workers_.emplace_back([this, i] { workerLoop(i); });
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lock(sleepMutex_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::drain(int worker) {
  uint64_t w = work_.load(std::memory_order_acquire);
  while (hasWork(w)) {
    if (work_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
      // The claimed task keeps this job alive (the caller waits for it), so fn_/ctx_ are stable.
      try {
        fn_(ctx_, static_cast<int64_t>(nextOf(w)), worker);
      } catch (...) {
        std::lock_guard<std::mutex> lock(errorMutex_);
        if (!error_) error_ = std::current_exception();
      }
      done_.fetch_add(1, std::memory_order_release);
      w = work_.load(std::memory_order_acquire);
    }
  }
}

void ThreadPool::workerLoop(int id) {
  for (;;) {
    drain(id);
    // Spin for new work for a while, then sleep.
    const int64_t until = nowNs() + spinNs_;
    bool found = false;
    for (int i = 0; !found; i++) {
      if (stop_.load(std::memory_order_relaxed)) return;
      if (hasWork(work_.load(std::memory_order_acquire))) {
        found = true;
        break;
      }
      LE_PAUSE();
      // Yield now and then: when another process holds the other core, this thread and the
      // caller share one, and pure spinning would starve the caller.
      if ((i & 63) == 63) {
        if (nowNs() > until) break;
        std::this_thread::yield();
      }
    }
    if (found) continue;
    std::unique_lock<std::mutex> lock(sleepMutex_);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    wake_.wait(lock, [this] { return stop_.load() || hasWork(work_.load(std::memory_order_seq_cst)); });
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
    if (stop_.load()) return;
  }
}

void ThreadPool::runImpl(int64_t tasks, TaskFn fn, void* ctx) {
  if (tasks <= 0) return;
  std::lock_guard<std::mutex> lock(runMutex_);
  if (tasks == 1 || threads() == 1) {
    for (int64_t t = 0; t < tasks; t++) fn(ctx, t, 0);  // exceptions propagate directly
    return;
  }
  // Large jobs run in rounds so the task count fits its 24 bits.
  for (int64_t base = 0; base < tasks; base += kMaxTasks) {
    const int64_t count = tasks - base < kMaxTasks ? tasks - base : kMaxTasks;
    struct Offset {
      TaskFn fn;
      void* ctx;
      int64_t base;
    } off{fn, ctx, base};
    fn_ = [](void* c, int64_t t, int w) {
      auto* o = static_cast<Offset*>(c);
      o->fn(o->ctx, o->base + t, w);
    };
    ctx_ = &off;
    done_.store(0, std::memory_order_relaxed);
    gen_ = (gen_ + 1) & 0xffff;
    work_.store((gen_ << (2 * kTaskBits)) | (static_cast<uint64_t>(count) << kTaskBits), std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> l(sleepMutex_); }
      wake_.notify_all();
    }
    drain(0);
    // Tasks claimed by workers may still run: wait for them (they are short).
    // A worker may have been descheduled holding a task: yield soon so it can finish even if
    // it shares this core.
    for (int i = 0; done_.load(std::memory_order_acquire) < count; i++) {
      if (i < 64) {
        LE_PAUSE();
      } else {
        std::this_thread::yield();
      }
    }
    if (error_) {
      std::exception_ptr e;
      std::swap(e, error_);
      std::rethrow_exception(e);
    }
  }
}

// CPUs this process may run on: the affinity mask respects container cpusets, which
// hardware_concurrency() (all host CPUs) does not.
static int availableCpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
#endif
  const int n = static_cast<int>(std::thread::hardware_concurrency());
  return n > 0 ? n : 1;
}

ThreadPool& pool() {
  static ThreadPool* p = [] {
    int n = static_cast<int>(envInt("LORA_EDGE_THREADS", availableCpus()));
    return new ThreadPool(n < 1 ? 1 : n);
  }();
  return *p;
}

}  // namespace le
