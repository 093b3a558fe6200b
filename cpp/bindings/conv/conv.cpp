// Bindings for cpp/conv/conv.h: Conv1d/Conv2d forward and backward over channels-last arrays
// (one call per direction) and the GEMM scratch they grow. Every argument is checked against
// the ConvGeometry before any output is touched, so a rejected call leaves parameters,
// gradients and buffers unchanged.
#include <cstdint>
#include <string>

#include "bindings/checks.h"
#include "bindings/layer_calls.h"
#include "bindings/scratch_dict.h"
#include "common/parallel.h"
#include "conv/conv.h"

namespace sg::bind {
namespace {

using std::to_string;

std::string dims_str(std::initializer_list<int64_t> dims) {
  std::string s = "(";
  for (const int64_t d : dims) s += (s.size() > 1 ? ", " : "") + to_string(d);
  return s + ")";
}

// A float32 array of exactly `dims` (what: "(n, h, w, c_in)"), any rank accepted up front so
// that a wrong rank reads as a wrong shape.
py::array geom_array(const char* fn, const char* name, py::handle obj, const char* what,
                     std::initializer_list<int64_t> dims) {
  py::array a = f32_array(fn, name, obj, -1);
  bool ok = a.ndim() == static_cast<py::ssize_t>(dims.size());
  for (size_t i = 0; ok && i < dims.size(); ++i) ok = a.shape(i) == dims.begin()[i];
  if (!ok) {
    value_error(fn, std::string(name) + " must have shape " + what + " = " + dims_str(dims) +
                        " for the geometry, got " + shape_str(a));
  }
  return a;
}

py::array input_array(const char* fn, const char* name, py::handle obj, const ConvGeometry& g) {
  return geom_array(fn, name, obj, "(n, h, w, c_in)", {g.n, g.h, g.w, g.c_in});
}

py::array output_like(const char* fn, const char* name, py::handle obj, const ConvGeometry& g) {
  return geom_array(fn, name, obj, "(n, oh, ow, c_out)", {g.n, g.oh, g.ow, g.c_out});
}

py::array weight_array(const char* fn, py::handle obj, const ConvGeometry& g) {
  return geom_array(fn, "weight", obj, "(c_out, c_in / groups, kh, kw)",
                    {g.c_out, g.c_in / g.groups, g.kh, g.kw});
}

py::array conv2d_forward(py::handle x_obj, py::handle w_obj, py::handle b_obj,
                         const ConvGeometry& g, const std::string& activation,
                         py::handle out_obj) {
  const char* fn = "conv2d_forward";
  const Activation act = relu_epilogue(fn, activation) ? Activation::relu : Activation::none;
  py::array x = input_array(fn, "input", x_obj, g);
  py::array w = weight_array(fn, w_obj, g);
  py::array b;
  const float* bp = opt_vector(fn, "bias", b_obj, g.c_out, &b);
  py::array y = out_array(fn, "out", out_obj, {g.n, g.oh, g.ow, g.c_out});
  return run_layer_forward(fn, y, "input", x, w, bp ? &b : nullptr,
                           [&](float* yp, const float* xp, const float* wp, const float* bq) {
                             conv2d_forward_f32(yp, xp, wp, bq, g, act);
                           });
}

py::object conv2d_backward(py::handle dy_obj, py::handle x_obj, py::handle w_obj,
                           const ConvGeometry& g, py::handle dw_obj, py::handle db_obj,
                           bool accumulate, py::handle accumulate_bias, bool compute_grad_input,
                           py::handle dx_obj) {
  const char* fn = "conv2d_backward";
  const bool acc_b = accumulate_bias.is_none() ? accumulate : accumulate_bias.cast<bool>();
  py::array dy = output_like(fn, "grad_output", dy_obj, g);
  py::array x = input_array(fn, "input", x_obj, g);
  py::array w = weight_array(fn, w_obj, g);
  py::array dw = inplace_array(fn, "grad_weight", dw_obj, {g.c_out, g.c_in / g.groups, g.kh, g.kw});
  require_disjoint_from(fn, "grad_weight", dw, {{"grad_output", &dy}, {"input", &x}, {"weight", &w}});
  float* dbp = nullptr;
  py::array db;
  if (!db_obj.is_none()) {
    db = inplace_array(fn, "grad_bias", db_obj, {g.c_out});
    require_disjoint_from(fn, "grad_bias", db,
                          {{"grad_output", &dy}, {"input", &x}, {"weight", &w}, {"grad_weight", &dw}});
    dbp = f32_ptr(db);
  }
  py::object dx;
  float* dxp = grad_input_arg(
      fn, compute_grad_input,
      [&] { return out_array(fn, "grad_input", dx_obj, {g.n, g.h, g.w, g.c_in}); }, "input", x,
      {{"grad_output", &dy}, {"weight", &w}, {"grad_weight", &dw}, {"grad_bias", dbp ? &db : nullptr}},
      true, &dx);
  float* dwp = f32_ptr(dw);
  return run_layer_backward(dx, dy, x, w, [&](const float* dyp, const float* xp, const float* wp) {
    conv2d_backward_f32(dxp, dwp, dbp, dyp, xp, wp, g, accumulate ? 1.0f : 0.0f,
                        acc_b ? 1.0f : 0.0f);
  });
}

py::dict conv2d_scratch_bytes(const ConvGeometry& g, bool input_grad, py::handle threads_obj) {
  const char* fn = "conv2d_scratch";
  const int64_t threads = thread_count(fn, threads_obj);
  return scratch_dict(conv2d_scratch(g, input_grad, threads));
}

}  // namespace

void register_conv(py::module_& m) {
  using py::arg;
  m.def("conv2d_forward", &conv2d_forward, arg("input"), arg("weight"), arg("bias"), arg("geom"),
        py::kw_only(), arg("activation") = "none", arg("out") = py::none(),
        "act(conv2d(input, weight) + bias) on channels-last arrays: input (n, h, w, c_in), "
        "weight torch's (c_out, c_in / groups, kh, kw), bias (c_out,) or None, all as geom "
        "says; returns (n, oh, ow, c_out). One implicit GEMM per group (the im2col is gathered "
        "by the GEMM's packing, never stored) with the bias and an optional 'relu' fused.");
  def_layer_backward(
      m, "conv2d_backward", &conv2d_backward,
      "Conv2d backward in one call, channels-last: grad_weight (+)= dL/dw, grad_bias (+)= "
      "the per-channel sums of grad_output (deterministic), and returns grad_input (the "
      "transposed convolution; None when compute_grad_input=False). accumulate=False writes "
      "without reading. grad_input may be input itself.",
      arg("grad_output"), arg("input"), arg("weight"), arg("geom"), arg("grad_weight"),
      arg("grad_bias") = py::none());
  // The *_scratch introspection bindings of the conv family (conv2d, depthwise, pool2d) are
  // parallel on purpose: one per kernel family, each sized by that family's C++ function.
  m.def("conv2d_scratch", &conv2d_scratch_bytes, arg("geom"), py::kw_only(),
        arg("input_grad") = true, arg("threads") = py::none(),
        "Bytes of GEMM scratch (packing buffers, reused across calls and only growing) that a "
        "Conv2d forward + backward with this geometry grows on `threads` (default: the current "
        "count), as linear_scratch reports it. input_grad: the backward computes dL/dx.");
}

}  // namespace sg::bind
