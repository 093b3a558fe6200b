// Helpers for deterministic OpenMP loops: fixed chunking that does not depend on the thread
// count, and a size threshold below which a parallel region costs more than it saves.
#pragma once
#include <omp.h>

#include <cstdint>

namespace sg {

// The team size of every kernel: one count for the whole process, set by sg.set_num_threads.
// OpenMP's own count (nthreads-var) belongs to each calling thread, so a kernel called from
// another Python thread would otherwise run with the default instead (cpp/common/threads.cpp).
int num_threads();
void set_num_threads(int n);

// Elementwise kernels go parallel from this many elements (fork/join is ~1-2 us on 2 cores).
constexpr int64_t kElementwiseParallelMin = 1 << 15;

// Calls body(begin, end) over [0, n) in fixed chunks of `chunk`, in parallel when n is large.
template <class Body>
inline void parallel_chunks(int64_t n, int64_t chunk, Body body) {
  const int64_t nchunks = (n + chunk - 1) / chunk;
  if (n < kElementwiseParallelMin || nchunks < 2 || num_threads() < 2) {
    body(int64_t{0}, n);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t b = c * chunk;
    const int64_t e = b + chunk < n ? b + chunk : n;
    body(b, e);
  }
}

}  // namespace sg
