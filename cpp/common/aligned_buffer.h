// A growable, 64-byte-aligned float scratch buffer. Grows, never shrinks: a steady-state caller
// (same shapes every step) allocates once.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace sg {

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { std::free(data_); }

  // What get(n) allocates on a grow: n floats rounded up to whole 64-byte lines.
  static size_t bytes_for(size_t n) { return ((n * sizeof(float) + 63) / 64) * 64; }

  // Returns at least n floats; contents are unspecified after a grow.
  float* get(size_t n) {
    if (n > capacity_) {
      grow_count().fetch_add(1, std::memory_order_relaxed);
      std::free(data_);
      size_t bytes = bytes_for(n);
      data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!data_) {
        capacity_ = 0;
        throw std::bad_alloc();
      }
      capacity_ = bytes / sizeof(float);
    }
    return data_;
  }

 // Grows so far, over every buffer of the process (tests: a steady state grows none).
  static int64_t grows() { return grow_count().load(std::memory_order_relaxed); }

 private:
  static std::atomic<int64_t>& grow_count() {
    static std::atomic<int64_t> n{0};
    return n;
  }
  float* data_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace sg
