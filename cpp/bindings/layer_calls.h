// The shared steps of the weight layers' bindings (Linear, Conv, depthwise): the forward's and
// the backward's final checks and kernel call without the GIL, the grad_input argument, and the
// keyword arguments every backward takes. The callers check their own shapes first.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <utility>

#include "bindings/checks.h"

namespace sg::bind {

// out disjoint from the input (named in_name), weight and bias (null: none), then
// kernel(y, x, w, bias) without the GIL (bias null when absent); returns out.
template <class Kernel>
py::array run_layer_forward(const char* fn, py::array y, const char* in_name, const py::array& x,
                            const py::array& w, const py::array* b, Kernel&& kernel) {
  require_disjoint_from(fn, "out", y, {{in_name, &x}, {"weight", &w}, {"bias", b}});
  const float* xp = f32_cptr(x);
  const float* wp = f32_cptr(w);
  const float* bp = b ? f32_cptr(*b) : nullptr;
  float* yp = f32_ptr(y);
  {
    py::gil_scoped_release release;
    kernel(yp, xp, wp, bp);
  }
  return y;
}

// The backward's grad_input: null (and *ret None) unless compute; else make() (the new or given
// array, its shape checked), disjoint from each of `others` and from the input `x` (allow_input:
// it may be the very memory, the kernel computing dL/dx after everything that reads the input),
// kept in *ret.
template <class Make>
float* grad_input_arg(const char* fn, bool compute, Make&& make, const char* x_name,
                      const py::array& x,
                      std::initializer_list<std::pair<const char*, const py::array*>> others,
                      bool allow_input, py::object* ret) {
  *ret = py::none();
  if (!compute) return nullptr;
  py::array dx = make();
  require_disjoint_from(fn, "grad_input", dx, others);
  require_disjoint(fn, "grad_input", dx, x_name, x, allow_input);
  *ret = dx;
  return f32_ptr(dx);
}

// kernel(dy, x, w) without the GIL (it writes the gradients the caller checked); returns dx.
template <class Kernel>
py::object run_layer_backward(py::object dx, const py::array& dy, const py::array& x,
                              const py::array& w, Kernel&& kernel) {
  const float* dyp = f32_cptr(dy);
  const float* xp = f32_cptr(x);
  const float* wp = f32_cptr(w);
  {
    py::gil_scoped_release release;
    kernel(dyp, xp, wp);
  }
  return dx;
}

// m.def(name, f, positional..., then the keyword-only arguments of every layer backward:
// accumulate=False, accumulate_bias=None, compute_grad_input=True, grad_input=None, doc).
template <class F, class... Args>
void def_layer_backward(py::module_& m, const char* name, F&& f, const char* doc,
                        Args&&... positional) {
  m.def(name, std::forward<F>(f), std::forward<Args>(positional)..., py::kw_only(),
        py::arg("accumulate") = false, py::arg("accumulate_bias") = py::none(),
        py::arg("compute_grad_input") = true, py::arg("grad_input") = py::none(), doc);
}

}  // namespace sg::bind
