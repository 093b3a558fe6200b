// Bindings for cpp/depthwise/depthwise.h: the depthwise convolution's forward and backward
// (one call per direction) on channels-last arrays. Every argument is validated before any
// output is touched, so a rejected call leaves gradients and buffers as they were.
#include <cstdint>
#include <string>

#include "bindings/checks.h"
#include "bindings/layer_calls.h"
#include "bindings/scratch_dict.h"
#include "common/parallel.h"
#include "depthwise/depthwise.h"

namespace sg::bind {
namespace {

using std::to_string;

struct Extent {
  const char* name;
  int64_t size;
};

// A float32 array of exactly the named extents: "<name> must have shape (n=2, h=5, ...) <why>,
// got <shape>" (any rank accepted up front, so that a wrong rank reads as a wrong shape).
py::array shaped(const char* fn, const char* name, const py::array& a,
                 std::initializer_list<Extent> want, const char* why) {
  bool ok = static_cast<size_t>(a.ndim()) == want.size();
  size_t i = 0;
  for (const Extent& e : want) ok = ok && a.shape(i++) == e.size;
  if (ok) return a;
  std::string s = "(";
  i = 0;
  for (const Extent& e : want) {
    s += (i++ ? ", " : "") + std::string(e.name) + "=" + to_string(e.size);
  }
  value_error(fn, std::string(name) + " must have shape " + s + ") " + why + ", got " +
                      shape_str(a));
}

py::array input_array(const char* fn, const char* name, py::handle obj,
                      std::initializer_list<Extent> want, const char* why) {
  return shaped(fn, name, f32_array(fn, name, obj, -1), want, why);
}

// An output or gradient the call writes: as input_array, and writeable.
py::array output_array(const char* fn, const char* name, py::handle obj,
                       std::initializer_list<Extent> want, const char* why) {
  py::array a = input_array(fn, name, obj, want, why);
  require_writeable(fn, name, a);
  return a;
}

void check_geometry(const char* fn, const ConvGeometry& g) {
  if (g.groups != g.c_in || g.c_out % g.c_in != 0) {
    value_error(fn, "geom must be depthwise (groups == c_in, c_out a multiple of c_in), got "
                    "groups=" + to_string(g.groups) + ", c_in=" + to_string(g.c_in) +
                        ", c_out=" + to_string(g.c_out));
  }
}

constexpr const char* kFromGeom = "from geom";

py::array weight_array(const char* fn, const char* name, py::handle obj, const ConvGeometry& g,
                       bool write) {
  const std::initializer_list<Extent> want = {
      {"c_out", g.c_out}, {"1", 1}, {"kh", g.kh}, {"kw", g.kw}};
  return write ? output_array(fn, name, obj, want, kFromGeom)
               : input_array(fn, name, obj, want, kFromGeom);
}

py::array depthwise_forward(py::handle x_obj, py::handle w_obj, py::handle b_obj,
                            const ConvGeometry& g, const std::string& activation,
                            py::handle out_obj) {
  const char* fn = "depthwise_conv2d_forward";
  check_geometry(fn, g);
  const bool relu = relu_epilogue(fn, activation);
  py::array x = input_array(fn, "x", x_obj, {{"n", g.n}, {"h", g.h}, {"w", g.w}, {"c_in", g.c_in}},
                            kFromGeom);
  py::array w = weight_array(fn, "weight", w_obj, g, false);
  py::array b;
  const float* bp = opt_vector(fn, "bias", b_obj, g.c_out, &b);
  const std::initializer_list<Extent> out_shape = {
      {"n", g.n}, {"oh", g.oh}, {"ow", g.ow}, {"c_out", g.c_out}};
  py::array y = out_obj.is_none() ? new_f32({g.n, g.oh, g.ow, g.c_out})
                                  : output_array(fn, "out", out_obj, out_shape, kFromGeom);
  return run_layer_forward(fn, y, "x", x, w, bp ? &b : nullptr,
                           [&](float* yp, const float* xp, const float* wp, const float* bq) {
                             depthwise_forward_f32(yp, xp, wp, bq, g, relu);
                           });
}

py::object depthwise_backward(py::handle dy_obj, py::handle x_obj, py::handle w_obj,
                              const ConvGeometry& g, py::handle dw_obj, py::handle db_obj,
                              bool accumulate, py::handle accumulate_bias,
                              bool compute_grad_input, py::handle dx_obj) {
  const char* fn = "depthwise_conv2d_backward";
  check_geometry(fn, g);
  const bool acc_b = accumulate_bias.is_none() ? accumulate : accumulate_bias.cast<bool>();
  const std::initializer_list<Extent> in_shape = {
      {"n", g.n}, {"h", g.h}, {"w", g.w}, {"c_in", g.c_in}};
  py::array dy = input_array(fn, "grad_out", dy_obj,
                             {{"n", g.n}, {"oh", g.oh}, {"ow", g.ow}, {"c_out", g.c_out}},
                             kFromGeom);
  py::array x = input_array(fn, "x", x_obj, in_shape, kFromGeom);
  py::array w = weight_array(fn, "weight", w_obj, g, false);
  py::array dw, db;
  float* dwp = nullptr;
  float* dbp = nullptr;
  if (!dw_obj.is_none()) {
    dw = weight_array(fn, "grad_weight", dw_obj, g, true);
    require_disjoint_from(fn, "grad_weight", dw, {{"grad_out", &dy}, {"x", &x}, {"weight", &w}});
    dwp = f32_ptr(dw);
  }
  if (!db_obj.is_none()) {
    db = output_array(fn, "grad_bias", db_obj, {{"c_out", g.c_out}}, kFromGeom);
    require_disjoint_from(fn, "grad_bias", db,
                          {{"grad_out", &dy}, {"x", &x}, {"weight", &w},
                           {"grad_weight", dwp ? &dw : nullptr}});
    dbp = f32_ptr(db);
  }
  py::object dx;
  float* dxp = grad_input_arg(
      fn, compute_grad_input,
      [&] {  // dX gathers every dy row that reaches it: never in place
        return dx_obj.is_none() ? new_f32({g.n, g.h, g.w, g.c_in})
                                : output_array(fn, "grad_input", dx_obj, in_shape, kFromGeom);
      },
      "x", x,
      {{"grad_out", &dy}, {"weight", &w}, {"grad_weight", dwp ? &dw : nullptr},
       {"grad_bias", dbp ? &db : nullptr}},
      false, &dx);
  return run_layer_backward(dx, dy, x, w, [&](const float* dyp, const float* xp, const float* wp) {
    depthwise_backward_f32(dxp, dwp, dbp, dyp, xp, wp, g, accumulate, acc_b);
  });
}

py::dict depthwise_scratch(const ConvGeometry& g, bool input_grad, py::handle threads_obj) {
  const char* fn = "depthwise_conv2d_scratch";
  check_geometry(fn, g);
  GemmScratch s;  // no GEMM: the driver workspace only
  s.add_driver(depthwise_scratch_bytes(g, input_grad, thread_count(fn, threads_obj)));
  return scratch_dict(s);
}

}  // namespace

void register_depthwise(py::module_& m) {
  using py::arg;
  m.def("depthwise_conv2d_forward", &depthwise_forward, arg("x"), arg("weight"), arg("bias"),
        arg("geom"), py::kw_only(), arg("activation") = "none", arg("out") = py::none(),
        "Depthwise 2-d convolution on channels-last arrays (geom.groups == c_in, c_out = "
        "m * c_in, output channel ci * m + j as torch): x (n, h, w, c_in), weight torch's "
        "(c_out, 1, kh, kw), bias (c_out,) or None; returns act(conv + bias) as (n, oh, ow, "
        "c_out) into out (allocated when None). activation 'none' | 'relu' (fused).");
  def_layer_backward(
      m, "depthwise_conv2d_backward", &depthwise_backward,
      "Depthwise backward in one call: grad_weight (c_out, 1, kh, kw) and grad_bias (c_out,) "
      "(None: not computed) written, or added to with accumulate / accumulate_bias (None: "
      "as accumulate), reduced in a fixed order (the same bits for any thread count); "
      "returns grad_input (n, h, w, c_in) (allocated when None; None when "
      "compute_grad_input=False). grad_out is (n, oh, ow, c_out), already masked by a fused "
      "ReLU.",
      arg("grad_out"), arg("x"), arg("weight"), arg("geom"), arg("grad_weight"), arg("grad_bias"));
  m.def("depthwise_conv2d_scratch", &depthwise_scratch, arg("geom"), py::kw_only(),
        arg("input_grad") = true, arg("threads") = py::none(),
        "Bytes of thread-local scratch (reused across calls and only growing) that a depthwise "
        "forward + backward with this geometry grows on `threads` (default: the current "
        "count), as conv2d_scratch reports it ('driver': the calling thread's workspace).");
}

}  // namespace sg::bind
