// The process-wide kernel thread count (see parallel.h).
#include <omp.h>

#include <atomic>

#include "common/parallel.h"

namespace sg {
namespace {
std::atomic<int> g_threads{0};  // 0: not set, OpenMP's default (OMP_NUM_THREADS or all cores)
}  // namespace

int num_threads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : omp_get_max_threads();
}

void set_num_threads(int n) {
  g_threads.store(n, std::memory_order_relaxed);
  omp_set_num_threads(n);  // the calling thread's own count too, for OpenMP code not ours
}

}  // namespace sg
