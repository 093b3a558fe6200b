// What every loss binding shares: the reduction argument, the non-negative weight check, the
// per-item output and scale of the reduction, and the value handed back ('mean' / 'sum': a Python float; 'none': the per-item losses).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "bindings/checks.h"

namespace sg::bind {

enum class Reduction { kNone, kMean, kSum };

inline Reduction loss_reduction(const char* fn, const std::string& r) {
  if (r == "mean") return Reduction::kMean;
  if (r == "sum") return Reduction::kSum;
  if (r == "none") return Reduction::kNone;
  value_error(fn, "reduction must be 'none', 'mean' or 'sum', got '" + r + "'");
}

// Raises unless every one of the n values is >= 0 (NaN included): a negative weight would turn
// the loss into a reward.
inline void require_nonnegative(const char* fn, const char* name, const float* w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!(w[i] >= 0.0f)) {
      value_error(fn, std::string(name) + " must be non-negative, got " + name + "[" +
                          std::to_string(i) + "] = " + std::to_string(w[i]));
    }
  }
}

// The per-item losses reduction 'none' asks for: a new float32 array of `shape`, its data in
// *data; for 'mean' / 'sum' None, and *data null (the kernel then writes none).
inline py::object loss_items(Reduction r, std::vector<py::ssize_t> shape, float** data) {
  *data = nullptr;
  if (r != Reduction::kNone) return py::none();
  py::array items = new_f32(std::move(shape));
  *data = f32_ptr(items);
  return items;
}

// The factor every item's loss and gradient is scaled by: 1 / count for 'mean' (0 when count is
// 0: the gradient of torch's nan), else 1.
inline float loss_scale(Reduction r, double count) {
  return r == Reduction::kMean ? (count > 0 ? static_cast<float>(1.0 / count) : 0.0f) : 1.0f;
}

// The loss for 'mean' (total / count; count 0 gives nan, as torch's 0/0) and 'sum'; for 'none'
// the per-item array.
inline py::object loss_value(Reduction r, double total, double count, const py::object& items) {
  if (r == Reduction::kNone) return items;
  if (r == Reduction::kSum) return py::float_(total);
  return py::float_(count != 0.0 ? total / count : NAN);
}

}  // namespace sg::bind
