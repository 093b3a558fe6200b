// Heap allocations made by the kernels, for the tests of the rule that a steady-state training
// step allocates nothing (issue 13: workspaces come from the layers' buffers and the grow-only
// thread-local scratch). Counted: every operator new this module calls without holding the GIL
// (the kernels run with it released, OpenMP's team threads never hold it; the binding code,
// which holds it, is Python's business: tracemalloc sees its arrays) and every grow of a
// thread-local AlignedBuffer. The replacement operators are hidden: they serve this module's
// own code only, never the process's, and allocate exactly as the default ones do.
#include <Python.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "common/aligned_buffer.h"

namespace {

std::atomic<int64_t> g_new_calls{0};

void* counted_alloc(std::size_t n, std::size_t align) {
  if (!PyGILState_Check()) g_new_calls.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  void* p = align > alignof(std::max_align_t)
                ? std::aligned_alloc(align, (n + align - 1) / align * align)
                : std::malloc(n);
  return p;
}

}  // namespace

#define SG_HIDDEN __attribute__((visibility("hidden")))

SG_HIDDEN void* operator new(std::size_t n) {
  void* p = counted_alloc(n, 0);
  if (!p) throw std::bad_alloc();
  return p;
}
SG_HIDDEN void* operator new[](std::size_t n) { return operator new(n); }
SG_HIDDEN void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return counted_alloc(n, 0);
}
SG_HIDDEN void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return counted_alloc(n, 0);
}
SG_HIDDEN void* operator new(std::size_t n, std::align_val_t a) {
  void* p = counted_alloc(n, static_cast<std::size_t>(a));
  if (!p) throw std::bad_alloc();
  return p;
}
SG_HIDDEN void* operator new[](std::size_t n, std::align_val_t a) { return operator new(n, a); }
SG_HIDDEN void operator delete(void* p) noexcept { std::free(p); }
SG_HIDDEN void operator delete[](void* p) noexcept { std::free(p); }
SG_HIDDEN void operator delete(void* p, std::size_t) noexcept { std::free(p); }
SG_HIDDEN void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
SG_HIDDEN void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
SG_HIDDEN void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
SG_HIDDEN void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
SG_HIDDEN void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace sg::bind {

void register_kernel_allocs(pybind11::module_& m) {
  m.def(
      "kernel_heap_allocations",
      [] { return g_new_calls.load() + AlignedBuffer::grows(); },
      "How many heap allocations the kernels have made in this process: operator new calls "
      "made without the GIL (inside a kernel call) plus grows of the thread-local scratch "
      "buffers. A steady-state training step adds none.");
}

}  // namespace sg::bind
