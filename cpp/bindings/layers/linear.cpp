// Bindings for cpp/layers/linear.h: the Linear layer's forward and backward (one call per
// direction) and the size of the GEMM scratch they grow. Every argument is validated before
// any output is touched, so a rejected call leaves parameters, gradients and buffers unchanged.
#include <omp.h>

#include <cstdint>
#include <string>

#include "bindings/checks.h"
#include "bindings/layer_calls.h"
#include "bindings/scratch_dict.h"
#include "common/parallel.h"
#include "layers/linear.h"

namespace sg::bind {
namespace {

using std::to_string;

py::array linear_forward(py::handle x_obj, py::handle w_obj, py::handle b_obj, py::handle out_obj,
                         const std::string& activation) {
  const char* fn = "linear_forward";
  const Activation act = relu_epilogue(fn, activation) ? Activation::relu : Activation::none;
  py::array w = f32_array(fn, "weight", w_obj, 2);
  const int64_t out_f = w.shape(0), in_f = w.shape(1);
  py::array x = f32_array(fn, "input", x_obj, -1);
  if (x.ndim() != 2 || x.shape(1) != in_f) {
    value_error(fn, "input must have shape (batch, in_features=" + to_string(in_f) +
                        ") for weight " + shape_str(w) + ", got " + shape_str(x));
  }
  const int64_t batch = x.shape(0);
  py::array b;
  const float* bp = opt_vector(fn, "bias", b_obj, out_f, &b);
  py::array y = out_array(fn, "out", out_obj, {batch, out_f});
  return run_layer_forward(fn, y, "input", x, w, bp ? &b : nullptr,
                           [&](float* yp, const float* xp, const float* wp, const float* bq) {
                             linear_forward_f32(yp, xp, wp, bq, batch, in_f, out_f, act);
                           });
}

py::object linear_backward(py::handle dy_obj, py::handle x_obj, py::handle w_obj,
                           py::handle dw_obj, py::handle db_obj, bool accumulate,
                           py::handle accumulate_bias, bool compute_grad_input, py::handle dx_obj) {
  const char* fn = "linear_backward";
  const bool acc_b = accumulate_bias.is_none() ? accumulate : accumulate_bias.cast<bool>();
  py::array w = f32_array(fn, "weight", w_obj, 2);
  const int64_t out_f = w.shape(0), in_f = w.shape(1);
  py::array x = f32_array(fn, "input", x_obj, 2);
  require_shape(fn, "input", x, {-1, in_f});
  const int64_t batch = x.shape(0);
  py::array dy =
      batch_matrix(fn, "grad_output", dy_obj, "the output's shape", batch, "out_features", out_f);
  py::array dw = inplace_array(fn, "grad_weight", dw_obj, {out_f, in_f});
  float* dbp = nullptr;
  py::array db;
  if (!db_obj.is_none()) {
    db = inplace_array(fn, "grad_bias", db_obj, {out_f});
    require_disjoint_from(fn, "grad_bias", db, {{"grad_output", &dy}, {"grad_weight", &dw}});
    dbp = f32_ptr(db);
  }
  require_disjoint_from(fn, "grad_weight", dw, {{"grad_output", &dy}, {"input", &x}, {"weight", &w}});
  py::object dx;
  float* dxp = grad_input_arg(
      fn, compute_grad_input, [&] { return out_array(fn, "grad_input", dx_obj, {batch, in_f}); },
      "input", x,
      {{"grad_output", &dy}, {"weight", &w}, {"grad_weight", &dw}, {"grad_bias", dbp ? &db : nullptr}},
      true, &dx);
  float* dwp = f32_ptr(dw);
  return run_layer_backward(dx, dy, x, w, [&](const float* dyp, const float* xp, const float* wp) {
    linear_backward_f32(dxp, dwp, dbp, dyp, xp, wp, batch, in_f, out_f, accumulate ? 1.0f : 0.0f,
                        acc_b ? 1.0f : 0.0f);
  });
}

py::dict linear_scratch_bytes(int64_t batch, int64_t in, int64_t out, bool input_grad,
                              py::handle threads_obj) {
  const char* fn = "linear_scratch";
  if (batch < 0 || in < 0 || out < 0) {
    value_error(fn, "batch, in_features, out_features must be >= 0, got (" + to_string(batch) +
                        ", " + to_string(in) + ", " + to_string(out) + ")");
  }
  const int64_t threads = thread_count(fn, threads_obj);
  return scratch_dict(linear_scratch(batch, in, out, input_grad, threads));
}

}  // namespace

void register_linear(py::module_& m) {
  m.def("linear_forward", &linear_forward, py::arg("input"), py::arg("weight"),
        py::arg("bias") = py::none(), py::kw_only(), py::arg("out") = py::none(),
        py::arg("activation") = "none",
        "act(input @ weight.T + bias) in one GEMM with the bias (and optional 'relu') fused. "
        "input (batch, in), weight (out, in), bias (out,) or None; returns (batch, out).");
  def_layer_backward(
      m, "linear_backward", &linear_backward,
      "Linear backward in one call: grad_weight (+)= grad_output.T @ input, grad_bias (+)= "
      "column sums of grad_output (deterministic), and returns grad_input = grad_output @ weight "
      "(None when compute_grad_input=False). accumulate=False writes without reading.",
      py::arg("grad_output"), py::arg("input"), py::arg("weight"), py::arg("grad_weight"),
      py::arg("grad_bias") = py::none());
  m.def("linear_scratch", &linear_scratch_bytes, py::arg("batch"), py::arg("in_features"),
        py::arg("out_features"), py::kw_only(), py::arg("input_grad") = true,
        py::arg("threads") = py::none(),
        "Bytes of GEMM scratch (packing buffers, reused across calls and only growing) that a "
        "Linear forward + backward at this shape grows on `threads` (default: the current "
        "count): a dict of 'b_shared' (calling thread), 'a' and 'b_own' (a list per team "
        "member) and 'total'. input_grad: the backward computes dL/dx.");
}

}  // namespace sg::bind
