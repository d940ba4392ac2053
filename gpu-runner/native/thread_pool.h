// A persistent pool of worker threads for parallel-for over independent tasks. Workers spin
// briefly after each job (decode issues kernels microseconds apart, and a futex wake costs more
// than that), then sleep on a condition variable. The caller always works too, so a job never
// waits for a sleeping worker to wake up.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace le {

class ThreadPool {
 public:
  static constexpr int kMaxThreads = 256;
  static constexpr int64_t kMaxTasks = (int64_t{1} << 24) - 1;

  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads taking part in a job, the caller included (≥ 1).
  void setThreads(int n);
  int threads() const { return threads_.load(std::memory_order_relaxed); }

  // Runs fn(task, worker) for every task in [0, tasks) and returns when all are done. `worker`
  // is in [0, threads()). An exception thrown by a task is rethrown here, on the caller's thread,
  // once the job has finished (a throw on a worker thread would otherwise end the process).
  template <class F>
  void run(int64_t tasks, F&& fn) {
    runImpl(tasks, [](void* ctx, int64_t t, int w) { (*static_cast<F*>(ctx))(t, w); }, &fn);
  }

 private:
  using TaskFn = void (*)(void* ctx, int64_t task, int worker);

  void runImpl(int64_t tasks, TaskFn fn, void* ctx);
  void start(int n);
  void stop();
  void workerLoop(int id);
  // Claims and runs tasks of the current job until none is left.
  void drain(int worker);

  // The job word: generation (16 bits) | task count (24) | next unclaimed task (24). Claiming is
  // a CAS on this word, so a worker can only run a task of the job that is live right now.
  std::atomic<uint64_t> work_{0};
  std::atomic<int64_t> done_{0};
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  uint64_t gen_ = 0;
  std::mutex errorMutex_;
  std::exception_ptr error_;

  std::atomic<int> threads_{1};
  std::vector<std::thread> workers_;
  std::atomic<bool> stop_{false};
  std::atomic<int> sleepers_{0};
  std::mutex sleepMutex_;
  std::condition_variable wake_;
  // One job at a time (worker_threads may share the addon), and setThreads excludes jobs.
  std::mutex runMutex_;
  int64_t spinNs_;
};

// The process-wide pool (created on first use, never destroyed: no joins at exit).
ThreadPool& pool();

}  // namespace le
