// GemmScratch as the Python dict every layer's *_scratch binding returns (the GemmScratch
// TypedDict of _core.pyi; nn/summary.py combines them).
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // the per-thread lists

#include <cstdint>
#include <string>

#include "common/parallel.h"
#include "gemm/gemm_scratch.h"

namespace sg::bind {

inline pybind11::dict scratch_dict(const GemmScratch& s) {
  pybind11::dict d;
  d["b_shared"] = s.b_shared_bytes;
  d["a"] = s.a_bytes;
  d["b_own"] = s.b_own_bytes;
  d["driver"] = s.driver_bytes;
  d["total"] = s.total_bytes();
  return d;
}

// A *_scratch binding's `threads`: None is the current thread count, else an int >= 1.
inline int64_t thread_count(const char* fn, const pybind11::handle& obj) {
  const int64_t threads = obj.is_none() ? sg::num_threads() : obj.cast<int64_t>();
  if (threads < 1) {
    throw pybind11::value_error(std::string(fn) + ": threads must be >= 1, got " +
                                std::to_string(threads));
  }
  return threads;
}

}  // namespace sg::bind
