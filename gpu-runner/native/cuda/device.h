// The device side of the CUDA module: one device, one stream, grow-only scratch buffers for the
// staged activations, RAII device allocations, and the error check that turns every CUDA error
// into a C++ exception (addon.cc turns those into JavaScript errors; nothing aborts).
#pragma once
#include <cuda_runtime_api.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>

namespace le {
namespace cuda {

// A CUDA call failed: the message names the call, the error's name and its description.
class CudaError : public std::runtime_error {
 public:
  explicit CudaError(const std::string& what) : std::runtime_error(what) {}
};

// No usable device (no driver, no GPU, or the chosen index out of range).
class NoDevice : public std::runtime_error {
 public:
  explicit NoDevice(const std::string& what) : std::runtime_error(what) {}
};

std::string errorText(cudaError_t e);
// Throws CudaError for anything but cudaSuccess (clearing a non-sticky error first).
void check(cudaError_t e, const char* what);
#define LE_CUDA_CHECK(call) ::le::cuda::check((call), #call)

// Device bytes held by weight and LoRA handles (for stats()).
extern std::atomic<int64_t> gHandleBytes;

// A device allocation; freed by its destructor (errors at that point are ignored: it may run in a
// finalizer after the runtime has begun shutting down).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { reset(); }

  // Exactly `bytes` (content undefined); throws CudaError (out of memory included).
  void allocate(size_t bytes);
  // At least `bytes`, keeping the allocation when it is already large enough (scratch).
  void ensure(size_t bytes);
  void reset();
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

enum ScratchSlot : int { kScratchX, kScratchY, kScratchAux, kScratchT, kScratchK, kScratchV, kScratchCount };

class Device {
 public:
  // The process's device (LORA_EDGE_CUDA_DEVICE, default 0), initialized on first use. Throws
  // NoDevice when there is none; the reason is kept, so later calls fail the same way.
  static Device& get();
  // The device if get() has already set it up, else null (never initializes, never throws).
  static Device* existing();

  // Number of devices, or 0 with the reason in `why` (never throws).
  static int count(std::string* why);

  // Makes this device current for the calling thread (the runtime's current device is per thread).
  void bind() const;
  cudaStream_t stream() const { return stream_; }
  int index() const { return index_; }
  DeviceBuffer& scratch(ScratchSlot s) { return scratch_[s]; }
  size_t scratchBytes() const;
  // Waits for the stream; throws CudaError with anything a kernel reported asynchronously.
  void sync() const;
  // Serializes the module's device work: JavaScript worker threads may call in concurrently.
  std::mutex& mutex() { return mu_; }

 private:
  Device() = default;
  int index_ = 0;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer scratch_[kScratchCount];
  std::mutex mu_;
};

}  // namespace cuda
}  // namespace le
