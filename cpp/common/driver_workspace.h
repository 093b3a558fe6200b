// The calling thread's workspace for the kernel drivers' own pieces (pooling's window tables,
// depthwise's row pointers, packed weight and partial sums, a strided convolution's phase
// block): one grow-only buffer per thread that each driver call carves its pieces from, so a
// steady-state training step allocates nothing, and the bytes are a function of the geometry
// that the drivers' *_scratch functions report (GemmScratch::driver_bytes) for the accounting.
//
// A driver writes its layout once, as a function of a Carver: run first to measure (no memory),
// then on the workspace, so the size reported and the pieces used cannot disagree.
#pragma once
#include <cstdint>

#include "common/aligned_buffer.h"

namespace sg {

class Carver {
 public:
  Carver() = default;                         // measures only: take() returns null
  explicit Carver(char* base) : base_(base), measuring_(false) {}

  // n elements of T on a fresh 64-byte line.
  template <class T>
  T* take(int64_t n) {
    const int64_t off = bytes_;
    bytes_ += (static_cast<int64_t>(sizeof(T)) * (n > 0 ? n : 0) + 63) / 64 * 64;
    return measuring_ ? nullptr : reinterpret_cast<T*>(base_ + off);
  }
  int64_t bytes() const { return bytes_; }

 private:
  char* base_ = nullptr;
  bool measuring_ = true;
  int64_t bytes_ = 0;
};

// The calling thread's workspace, grown to at least `bytes` (contents unspecified).
inline char* driver_workspace(int64_t bytes) {
  thread_local AlignedBuffer buf;
  return reinterpret_cast<char*>(buf.get(static_cast<size_t>((bytes + 3) / 4)));
}

// layout(Carver&) -> the pieces, carved from the calling thread's workspace. The pieces stay
// valid until the next carve on this thread.
template <class Layout>
auto carve_workspace(Layout&& layout) {
  Carver measure;
  layout(measure);
  Carver c(driver_workspace(measure.bytes()));
  return layout(c);
}

// The bytes layout(Carver&) takes (what a *_scratch function reports).
template <class Layout>
int64_t workspace_bytes(Layout&& layout) {
  Carver measure;
  layout(measure);
  return measure.bytes();
}

}  // namespace sg
