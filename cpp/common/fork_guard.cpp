// pthread_atfork child handler for libgomp (see fork_guard.h).
#include "common/fork_guard.h"

#include "common/parallel.h"

#include <omp.h>
#include <pthread.h>

#include <atomic>
#include <mutex>

namespace sg {
namespace {

std::atomic<bool> forked_child{false};

// Runs in the child, in the only thread it has (the one that called fork). It sets that
// process-wide kernel count (and that thread's nthreads-var): every kernel sizes its team by
// num_threads() (or runs its region under an `if`), so none asks the stale pool for workers.
void on_fork_child() {
  forked_child.store(true, std::memory_order_relaxed);
  set_num_threads(1);
}

}  // namespace

void install_fork_guard() {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(nullptr, nullptr, &on_fork_child); });
}

bool in_forked_child() { return forked_child.load(std::memory_order_relaxed); }

}  // namespace sg
