// The CPU emulation's engine (fibers, barriers, launches) and a stand-in for the parts of the
// CUDA runtime the module calls (see emu.h). "Device" memory is host memory placed right before
// an inaccessible guard page, so a kernel or copy that runs past an allocation faults at once;
// copies check that their source and destination sit on the sides their kind says.
#include "emu.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

namespace emu {

State g;

namespace {

// A minimal x86-64 context switch (callee-saved registers and the stack pointer): ucontext's
// swapcontext makes a system call per switch, which made the emulator ~10x slower.
extern "C" void emu_switch(void** saveSp, void* loadSp);
asm(R"(
  .text
  .globl emu_switch
  .hidden emu_switch
  .type emu_switch,@function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch, .-emu_switch
)");

struct Fiber {
  void* sp = nullptr;
  bool done = false;
};

constexpr size_t kStack = 128 * 1024;

// Stacks for up to 1024 fibers, mapped once (pages are committed only as they are touched).
char* stackPool() {
  static char* pool = [] {
    void* m = mmap(nullptr, kStack * 1024, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) std::abort();
    return static_cast<char*>(m);
  }();
  return pool;
}

struct Block {
  std::vector<Fiber> fibers;
  int current = -1;
  void* schedulerSp = nullptr;
  const std::function<void()>* body = nullptr;
  // Barrier bookkeeping: generation counters, arrivals, live (not finished) counts.
  long blockGen = 0;
  int blockArrived = 0;
  int live = 0;
  std::vector<long> warpGen;
  std::vector<int> warpArrived, warpLive;
  std::vector<double> shfl;
  std::vector<char> dynShared;
  unsigned rng = 12345;
};

Block* B = nullptr;

void setThread(int t) {
  const dim3 bd = g.blockDim_;
  g.threadIdx_.x = t % bd.x;
  g.threadIdx_.y = (t / bd.x) % bd.y;
  g.threadIdx_.z = t / (bd.x * bd.y);
}

void yield() {
  Fiber& f = B->fibers[B->current];
  emu_switch(&f.sp, B->schedulerSp);
  setThread(B->current);  // back in this fiber: restore its threadIdx
}

[[noreturn]] void fiberMain() {
  B->body[0]();
  Fiber& f = B->fibers[B->current];
  f.done = true;
  B->live--;
  B->warpLive[B->current / 32]--;
  emu_switch(&f.sp, B->schedulerSp);
  std::abort();  // a finished fiber is never resumed
}

// A fresh fiber's stack: six zero registers, then fiberMain as the return address of
// emu_switch's `ret`, then a fake return address so fiberMain starts with the ABI's alignment.
void* initStack(char* base, size_t size) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(base) + size) & ~uintptr_t{15};
  auto* sp = reinterpret_cast<uintptr_t*>(top);
  *--sp = 0;                                             // fake return address of fiberMain
  *--sp = reinterpret_cast<uintptr_t>(&fiberMain);       // popped by ret
  for (int i = 0; i < 6; i++) *--sp = 0;                 // rbp rbx r12 r13 r14 r15
  return sp;
}

std::mutex gMu;  // one launch at a time (worker threads may call the module concurrently)

}  // namespace

void syncthreads() {
  const long gen = B->blockGen;
  if (++B->blockArrived == B->live) {
    B->blockArrived = 0;
    B->blockGen++;
    return;
  }
  while (B->blockGen == gen) {
    yield();
    if (B->blockGen == gen && B->blockArrived == B->live) {  // the rest finished meanwhile
      B->blockArrived = 0;
      B->blockGen++;
    }
  }
}

void syncwarp() {
  const int w = B->current / 32;
  const long gen = B->warpGen[w];
  if (++B->warpArrived[w] == B->warpLive[w]) {
    B->warpArrived[w] = 0;
    B->warpGen[w]++;
    return;
  }
  while (B->warpGen[w] == gen) {
    yield();
    if (B->warpGen[w] == gen && B->warpArrived[w] == B->warpLive[w]) {
      B->warpArrived[w] = 0;
      B->warpGen[w]++;
    }
  }
}

double shflXorD(double v, int laneMask) {
  const int t = B->current;
  if (B->warpLive[t / 32] != 32) {
    std::fprintf(stderr, "emu: warp shuffle with %d live lanes (block %u,%u thread %d)\n", B->warpLive[t / 32], g.blockIdx_.x, g.blockIdx_.y, t);
    std::abort();
  }
  B->shfl[t] = v;
  syncwarp();
  const double r = B->shfl[(t & ~31) | ((t & 31) ^ laneMask)];
  syncwarp();
  return r;
}

void* dynamicShared() { return B->dynShared.data(); }

void misaligned(const void* p, size_t align) {
  std::fprintf(stderr, "emu: misaligned %zu-byte load at %p (block %u,%u thread %u)\n", align, p, g.blockIdx_.x, g.blockIdx_.y, g.threadIdx_.x);
  std::abort();
}

void setLastError(cudaError_t e);

cudaError_t launch(const std::function<void()>& body, dim3 grid, dim3 block, size_t sharedBytes, cudaStream_t) {
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || threads == 0 || threads > 1024 || grid.y > 65535 || grid.z > 65535 ||
      grid.x > 0x7fffffffu || block.z > 64) {
    setLastError(cudaErrorInvalidConfiguration);  // what the launcher's cudaGetLastError() reports
    return cudaErrorInvalidConfiguration;
  }
  if (sharedBytes > 48 * 1024) {
    setLastError(cudaErrorInvalidValue);
    return cudaErrorInvalidValue;
  }
  std::lock_guard<std::mutex> lock(gMu);
  Block blk;
  B = &blk;
  blk.body = &body;
  blk.fibers.resize(threads);
  const int nWarps = static_cast<int>((threads + 31) / 32);
  blk.warpGen.assign(nWarps, 0);
  blk.warpArrived.assign(nWarps, 0);
  blk.shfl.assign(nWarps * 32, 0.0);
  blk.dynShared.assign(sharedBytes + 16, 0x7f);  // poison: 0x7f7f7f7f is a large float
  g.blockDim_ = block;
  g.gridDim_ = grid;
  std::vector<int> order(threads);
  for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
      for (unsigned bx = 0; bx < grid.x; bx++) {
        g.blockIdx_ = {bx, by, bz};
        blk.live = static_cast<int>(threads);
        blk.warpLive.assign(nWarps, 0);
        for (uint64_t t = 0; t < threads; t++) blk.warpLive[t / 32]++;
        blk.blockArrived = 0;
        std::fill(blk.warpArrived.begin(), blk.warpArrived.end(), 0);
        for (uint64_t t = 0; t < threads; t++) {
          Fiber& f = blk.fibers[t];
          f.done = false;
          f.sp = initStack(stackPool() + t * kStack, kStack);
          order[t] = static_cast<int>(t);
        }
        while (blk.live > 0) {
          // A shuffled order each round: results must not depend on who runs first.
          for (size_t i = order.size(); i > 1; i--) {
            blk.rng = blk.rng * 1103515245u + 12345u;
            std::swap(order[i - 1], order[(blk.rng >> 8) % i]);
          }
          for (int t : order) {
            if (blk.fibers[t].done) continue;
            blk.current = t;
            setThread(t);
            emu_switch(&blk.schedulerSp, blk.fibers[t].sp);
          }
        }
      }
  B = nullptr;
  return cudaSuccess;
}

}  // namespace emu

// ---------------------------------------------------------------------------------------------
// The CUDA runtime, as far as the module uses it.

namespace {

std::mutex gMemMu;
std::map<uintptr_t, std::pair<void*, size_t>> gAllocs;  // user pointer → (mapping, mapping bytes)
cudaError_t gLast = cudaSuccess;

bool isDevice(const void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(gMemMu);
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = gAllocs.upper_bound(a);
  if (it == gAllocs.begin()) return false;
  --it;
  const uintptr_t base = reinterpret_cast<uintptr_t>(it->second.first);
  const uintptr_t end = base + it->second.second - static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return a >= it->first && a + bytes <= end;
}

cudaError_t fail(cudaError_t e) {
  gLast = e;
  return e;
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "emu: %s\n", what);
    std::abort();
  }
}

}  // namespace

namespace emu {
void setLastError(cudaError_t e) { gLast = e; }
}  // namespace emu

extern "C" {

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
    default:
      return "cudaErrorUnknown";
  }
}

const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }

cudaError_t cudaGetLastError() {
  const cudaError_t e = gLast;
  gLast = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return gLast; }

cudaError_t cudaGetDeviceCount(int* n) {
  const char* none = std::getenv("LORA_EDGE_EMU_NO_DEVICE");
  if (none && *none == '1') {
    *n = 0;
    return fail(cudaErrorNoDevice);
  }
  *n = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice); }

cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d != 0) return fail(cudaErrorInvalidDevice);
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "lora-edge CPU emulation");
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 1;
  p->totalGlobalMem = size_t{1} << 34;
  p->l2CacheSize = 1 << 20;
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int) {
  static int dummy;
  *s = reinterpret_cast<cudaStream_t>(&dummy);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaMalloc(void** p, size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (bytes > (size_t{1} << 40)) return fail(cudaErrorMemoryAllocation);
  const size_t body = (bytes + page - 1) / page * page;
  void* m = mmap(nullptr, body + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return fail(cudaErrorMemoryAllocation);
  mprotect(static_cast<char*>(m) + body, page, PROT_NONE);
  // Place the buffer at the end of its pages (256-byte aligned, like cudaMalloc): reading past it
  // hits the guard page. Fill with a poison pattern: nothing may rely on fresh memory being zero.
  const uintptr_t user = (reinterpret_cast<uintptr_t>(m) + body - bytes) & ~uintptr_t{255};
  std::memset(m, 0x7f, body);
  std::lock_guard<std::mutex> lock(gMemMu);
  gAllocs[user] = {m, body + page};
  *p = reinterpret_cast<void*>(user);
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  std::lock_guard<std::mutex> lock(gMemMu);
  auto it = gAllocs.find(reinterpret_cast<uintptr_t>(p));
  check(it != gAllocs.end(), "cudaFree of a pointer cudaMalloc did not return");
  munmap(it->second.first, it->second.second);
  gAllocs.erase(it);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  if (bytes == 0) return cudaSuccess;
  if (kind == cudaMemcpyHostToDevice) check(isDevice(dst, bytes) && !isDevice(src, 1), "H2D copy with wrong sides or out of bounds");
  if (kind == cudaMemcpyDeviceToHost) check(isDevice(src, bytes) && !isDevice(dst, 1), "D2H copy with wrong sides or out of bounds");
  if (kind == cudaMemcpyDeviceToDevice) check(isDevice(src, bytes) && isDevice(dst, bytes), "D2D copy out of bounds");
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) { return cudaMemcpyAsync(dst, src, bytes, kind, nullptr); }

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height, cudaMemcpyKind kind,
                              cudaStream_t) {
  if (width > dpitch || width > spitch) return fail(cudaErrorInvalidPitchValue);
  if (height == 0 || width == 0) return cudaSuccess;
  if (kind == cudaMemcpyHostToDevice) check(isDevice(dst, dpitch * (height - 1) + width), "2D H2D copy out of bounds");
  for (size_t r = 0; r < height; r++) std::memcpy(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width);
  return cudaSuccess;
}

cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  check(isDevice(dst, bytes), "memset out of bounds");
  std::memset(dst, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  static int dummy;
  *e = reinterpret_cast<cudaEvent_t>(&dummy);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t, cudaEvent_t) {
  *ms = 1.0f;
  return cudaSuccess;
}

cudaError_t cudaMemset2DAsync(void* dst, size_t pitch, int value, size_t width, size_t height, cudaStream_t) {
  if (width > pitch) return fail(cudaErrorInvalidPitchValue);
  if (height == 0 || width == 0) return cudaSuccess;
  check(isDevice(dst, pitch * (height - 1) + width), "2D memset out of bounds");
  for (size_t r = 0; r < height; r++) std::memset(static_cast<char*>(dst) + r * pitch, value, width);
  return cudaSuccess;
}

}  // extern "C"
