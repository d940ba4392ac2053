#include "device.h"

#include <cstdlib>
#include <memory>
#include <mutex>

namespace le {
namespace cuda {

std::atomic<int64_t> gHandleBytes{0};

std::string errorText(cudaError_t e) { return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")"; }

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // a non-sticky error must not be reported again by the next call
  throw CudaError(std::string(what) + " failed: " + errorText(e));
}

void DeviceBuffer::allocate(size_t bytes) {
  reset();
  if (bytes == 0) return;
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw CudaError("cudaMalloc of " + std::to_string(bytes) + " bytes failed: " + errorText(e));
  }
  p_ = p;
  bytes_ = bytes;
}

void DeviceBuffer::ensure(size_t bytes) {
  if (bytes <= bytes_) return;
  // Grow by half again at least, in whole MiB: buffers that creep up (a KV cache gaining a row
  // per token) are reallocated O(log n) times, not once per call.
  size_t want = bytes > bytes_ + bytes_ / 2 ? bytes : bytes_ + bytes_ / 2;
  want = (want + (size_t{1} << 20) - 1) >> 20 << 20;
  allocate(want);
}

void DeviceBuffer::reset() {
  if (p_ && cudaFree(p_) != cudaSuccess) cudaGetLastError();
  p_ = nullptr;
  bytes_ = 0;
}

namespace {

std::mutex gInitMu;
Device* gDevice = nullptr;  // never destroyed: the runtime tears itself down at exit
bool gInitDone = false;
std::string gInitError;

}  // namespace

int Device::count(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (why) *why = "cudaGetDeviceCount failed: " + errorText(e);
    return 0;
  }
  if (n <= 0 && why) *why = "cudaGetDeviceCount reports 0 devices";
  return n > 0 ? n : 0;
}

Device& Device::get() {
  std::lock_guard<std::mutex> lock(gInitMu);
  if (!gInitDone) {
    gInitDone = true;
    std::string why;
    const int n = count(&why);
    int index = 0;
    const char* env = std::getenv("LORA_EDGE_CUDA_DEVICE");
    bool badIndex = false;
    if (env && *env) {
      char* end = nullptr;
      const long v = std::strtol(env, &end, 10);
      badIndex = *end != '\0' || v < 0 || v > 1024;
      index = badIndex ? 0 : static_cast<int>(v);
    }
    if (n == 0) {
      gInitError = "no CUDA device: " + why;
    } else if (badIndex || index >= n) {
      gInitError = "no CUDA device: LORA_EDGE_CUDA_DEVICE=" + std::string(env) + " but there " + (n == 1 ? "is 1 device" : "are " + std::to_string(n) + " devices");
    } else {
      try {
        std::unique_ptr<Device> d(new Device());
        d->index_ = index;
        LE_CUDA_CHECK(cudaSetDevice(index));
        LE_CUDA_CHECK(cudaStreamCreateWithFlags(&d->stream_, cudaStreamNonBlocking));
        gDevice = d.release();
      } catch (const std::exception& e) {
        gInitError = std::string("no CUDA device: ") + e.what();
      }
    }
  }
  if (!gDevice) throw NoDevice(gInitError);
  return *gDevice;
}

Device* Device::existing() {
  std::lock_guard<std::mutex> lock(gInitMu);
  return gDevice;
}

void Device::bind() const { LE_CUDA_CHECK(cudaSetDevice(index_)); }

size_t Device::scratchBytes() const {
  size_t s = 0;
  for (const auto& b : scratch_) s += b.bytes();
  return s;
}

void Device::sync() const { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize (a kernel or copy failed)"); }

}  // namespace cuda
}  // namespace le
