// GemmScratch as the Python dict every layer's *_scratch binding returns (the GemmScratch
// TypedDict of _core.pyi; nn/summary.py combines them).
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // the per-thread lists

#include "gemm/gemm_scratch.h"

namespace sg::bind {

inline pybind11::dict scratch_dict(const GemmScratch& s) {
  pybind11::dict d;
  d["b_shared"] = s.b_shared_bytes;
  d["a"] = s.a_bytes;
  d["b_own"] = s.b_own_bytes;
  d["total"] = s.total_bytes();
  return d;
}

}  // namespace sg::bind
