// What every loss binding shares: the reduction argument, the non-negative weight check, the
// class-index targets and class weight of the class losses, the per-item output and scale of the reduction, and the value handed back ('mean' / 'sum': a Python float; 'none': the per-item losses).
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

// The class-index targets of (batch, classes) input x: int32/int64 (batch,), each in
// [0, classes) or ignore_index. Returns the number of targets not ignored, weighted by
// class_weight when given.
inline py::array class_labels(const char* fn, const py::handle& obj, const py::array& x, const char* x_name,
                       int64_t ignore_index, const float* w, double* counted) {
  py::array y = int_array(fn, "labels", obj, 1);
  const int64_t B = x.shape(0), C = x.shape(1);
  if (y.shape(0) != B) {
    value_error(fn, "labels must have shape (batch=" + std::to_string(B) + ",) to match " + x_name + " " +
                        shape_str(x) + ", got " + shape_str(y));
  }
  const bool i64 = y.itemsize() == 8;
  double n = 0.0;
  for (int64_t i = 0; i < B; ++i) {
    const int64_t v = i64 ? static_cast<const int64_t*>(y.data())[i]
                          : static_cast<const int32_t*>(y.data())[i];
    if (v == ignore_index) continue;
    if (v < 0 || v >= C) {
      value_error(fn, "labels[" + std::to_string(i) + "] = " + std::to_string(v) + " is out of range for " +
                          std::to_string(C) + " classes (expected 0 <= label < " + std::to_string(C) +
                          "), and is not ignore_index=" + std::to_string(ignore_index));
    }
    n += w ? static_cast<double>(w[v]) : 1.0;
  }
  *counted = n;
  return y;
}

// The optional (classes,) class weight, non-negative.
inline const float* class_weight(const char* fn, const py::handle& obj, int64_t C, py::array* keep) {
  const float* w = opt_vector(fn, "weight", obj, C, keep);
  if (w) require_nonnegative(fn, "weight", w, C);
  return w;
}

}  // namespace sg::bind
