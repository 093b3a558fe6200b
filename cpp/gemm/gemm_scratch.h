// The thread-local scratch a sequence of GEMM calls grows (the packing buffers of gemm.cpp)
// and the drivers' workspace (common/driver_workspace.h),
// for memory accounting: each buffer is reused and only grows, so a sequence needs, per buffer
// and per team member, the largest demand of any call, not the sum. A layer that runs GEMMs
// describes its calls here (e.g. linear_scratch), so no caller re-lists them.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "gemm/gemm.h"

namespace sg {

struct GemmScratch {
  int64_t b_shared_bytes = 0;          // the calling thread's B panel
  std::vector<int64_t> a_bytes;        // team member t's A block
  std::vector<int64_t> b_own_bytes;    // team member t's B micropanels
  int64_t driver_bytes = 0;            // the calling thread's driver workspace (driver_workspace.h)

  void add_driver(int64_t bytes) { driver_bytes = std::max(driver_bytes, bytes); }

  void add(const GemmWorkspace& w) {
    b_shared_bytes = std::max(b_shared_bytes, w.b_shared_bytes);
    const size_t n = static_cast<size_t>(w.threads);
    if (a_bytes.size() < n) a_bytes.resize(n, 0), b_own_bytes.resize(n, 0);
    for (size_t t = 0; t < n; ++t) {
      a_bytes[t] = std::max(a_bytes[t], w.a_bytes);
      b_own_bytes[t] = std::max(b_own_bytes[t], w.b_own_bytes);
    }
  }
  void add(const GemmScratch& s) {
    b_shared_bytes = std::max(b_shared_bytes, s.b_shared_bytes);
    add_driver(s.driver_bytes);
    if (a_bytes.size() < s.a_bytes.size()) {
      a_bytes.resize(s.a_bytes.size(), 0), b_own_bytes.resize(s.a_bytes.size(), 0);
    }
    for (size_t t = 0; t < s.a_bytes.size(); ++t) {
      a_bytes[t] = std::max(a_bytes[t], s.a_bytes[t]);
      b_own_bytes[t] = std::max(b_own_bytes[t], s.b_own_bytes[t]);
    }
  }
  int64_t total_bytes() const {
    int64_t total = b_shared_bytes + driver_bytes;
    for (size_t t = 0; t < a_bytes.size(); ++t) total += a_bytes[t] + b_own_bytes[t];
    return total;
  }
};

}  // namespace sg
