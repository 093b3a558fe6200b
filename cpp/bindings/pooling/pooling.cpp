// Bindings for cpp/pooling/pooling.h: max, average and adaptive average pooling over
// channels-last (n, h, w, c) float32 batches, forward and backward (one call each). The
// geometry comes as one ConvGeometry (c_in == c_out, groups 1; 1-d pooling is h = 1). Every
// argument is checked before any output is written; the kernels run without the GIL.
#include <pybind11/numpy.h>

#include <cstdint>
#include <string>

#include "bindings/checks.h"
#include "bindings/scratch_dict.h"
#include "layers/conv_geometry.h"
#include "pooling/pooling.h"

namespace sg::bind {
namespace {

using std::to_string;

// torch's pooling rules on a geometry: channels kept, padding at most half the window (torch
// checks the undilated kernel), average pooling undilated; window elements index exactly as
// float (< 2^24).
void check_pool_geometry(const char* fn, const ConvGeometry& g, bool dilation_allowed) {
  if (g.c_in != g.c_out || g.groups != 1) {
    value_error(fn, "geom must have c_out == c_in and groups == 1 for pooling, got c_in=" +
                        to_string(g.c_in) + ", c_out=" + to_string(g.c_out) +
                        ", groups=" + to_string(g.groups));
  }
  if (!dilation_allowed && (g.dh != 1 || g.dw != 1)) {
    value_error(fn, "geom must have dilation 1x1 for average pooling, got " + to_string(g.dh) +
                        "x" + to_string(g.dw));
  }
  if (g.ph0 > g.kh / 2 || g.ph1 > g.kh / 2 || g.pw0 > g.kw / 2 || g.pw1 > g.kw / 2) {
    value_error(fn, "pad should be smaller than or equal to half of kernel size, got padding (" +
                        to_string(g.ph0) + "+" + to_string(g.ph1) + ", " + to_string(g.pw0) +
                        "+" + to_string(g.pw1) + ") for kernel " + to_string(g.kh) + "x" +
                        to_string(g.kw));
  }
  if (g.kh * g.kw >= (int64_t{1} << 24)) {
    value_error(fn, "the window must have fewer than 2^24 elements, got " + to_string(g.kh) +
                        "x" + to_string(g.kw));
  }
}

// An int32 (n, oh, ow, c) array of argmax indices: new when obj is None, else checked.
py::array indices_array(const char* fn, const py::handle& obj, const ConvGeometry& g,
                        bool write) {
  if (write && obj.is_none()) return py::array_t<int32_t>({g.n, g.oh, g.ow, g.c_in});
  py::array a = int_array(fn, "indices", obj, 4);
  if (a.itemsize() != 4) {
    type_error(fn, "indices must have dtype int32, got " + dtype_str(a) + " array of shape " +
                       shape_str(a));
  }
  require_shape(fn, "indices", a, {g.n, g.oh, g.ow, g.c_in});
  if (write) require_writeable(fn, "indices", a);
  return a;
}

py::array pool_input(const char* fn, const char* name, const py::handle& obj, int64_t n,
                     int64_t h, int64_t w, int64_t c) {
  py::array a = f32_array(fn, name, obj, 4);
  require_shape(fn, name, a, {n, h, w, c});
  return a;
}

py::tuple max_pool2d_forward(py::handle x_obj, const ConvGeometry& g, py::handle out_obj,
                             py::handle idx_obj) {
  const char* fn = "max_pool2d_forward";
  check_pool_geometry(fn, g, true);
  py::array x = pool_input(fn, "input", x_obj, g.n, g.h, g.w, g.c_in);
  py::array y = out_array(fn, "out", out_obj, {g.n, g.oh, g.ow, g.c_in});
  require_disjoint(fn, "out", y, "input", x);
  py::array idx = indices_array(fn, idx_obj, g, true);
  require_disjoint_from(fn, "indices", idx, {{"input", &x}, {"out", &y}});
  const float* xp = f32_cptr(x);
  float* yp = f32_ptr(y);
  auto* ip = static_cast<int32_t*>(idx.mutable_data());
  {
    py::gil_scoped_release release;
    max_pool_forward(g, xp, yp, ip);
  }
  return py::make_tuple(y, idx);
}

py::array max_pool2d_backward(py::handle dy_obj, py::handle idx_obj, const ConvGeometry& g,
                              py::handle dx_obj) {
  const char* fn = "max_pool2d_backward";
  check_pool_geometry(fn, g, true);
  py::array dy = pool_input(fn, "grad_output", dy_obj, g.n, g.oh, g.ow, g.c_in);
  py::array idx = indices_array(fn, idx_obj, g, false);
  py::array dx = out_array(fn, "grad_input", dx_obj, {g.n, g.h, g.w, g.c_in});
  require_disjoint_from(fn, "grad_input", dx, {{"grad_output", &dy}, {"indices", &idx}});
  const float* dyp = f32_cptr(dy);
  const auto* ip = static_cast<const int32_t*>(idx.data());
  float* dxp = f32_ptr(dx);
  {
    py::gil_scoped_release release;
    max_pool_backward(g, dyp, ip, dxp);  // any index value is safe: it is only compared
  }
  return dx;
}

int64_t divisor(const char* fn, const py::handle& obj) {
  if (obj.is_none()) return 0;
  if (py::isinstance<py::bool_>(obj) || !py::isinstance<py::int_>(obj)) {
    type_error(fn, "divisor_override must be an int or None, got " +
                       py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  }
  const int64_t d = obj.cast<int64_t>();
  if (d == 0) value_error(fn, "divisor_override must be non-zero, got 0");
  return d;
}

// Average pooling both ways: the forward maps input (n, h, w, c) to out (n, oh, ow, c), the
// backward grad_output (n, oh, ow, c) to grad_input (n, h, w, c).
py::array avg_pool2d_call(bool forward, py::handle src_obj, const ConvGeometry& g,
                          bool count_include_pad, py::handle div_obj, py::handle dst_obj) {
  const char* fn = forward ? "avg_pool2d_forward" : "avg_pool2d_backward";
  const char* src_name = forward ? "input" : "grad_output";
  const char* dst_name = forward ? "out" : "grad_input";
  check_pool_geometry(fn, g, false);
  const int64_t d = divisor(fn, div_obj);
  const int64_t sh = forward ? g.h : g.oh, sw = forward ? g.w : g.ow;
  py::array src = pool_input(fn, src_name, src_obj, g.n, sh, sw, g.c_in);
  py::array dst = out_array(fn, dst_name, dst_obj,
                            {g.n, forward ? g.oh : g.h, forward ? g.ow : g.w, g.c_in});
  require_disjoint(fn, dst_name, dst, src_name, src);
  const auto kernel = forward ? &avg_pool_forward : &avg_pool_backward;
  const float* sp = f32_cptr(src);
  float* dp = f32_ptr(dst);
  {
    py::gil_scoped_release release;
    kernel(g, count_include_pad, d, sp, dp);
  }
  return dst;
}

py::array avg_pool2d_forward(py::handle x_obj, const ConvGeometry& g, bool count_include_pad,
                             py::handle div_obj, py::handle out_obj) {
  return avg_pool2d_call(true, x_obj, g, count_include_pad, div_obj, out_obj);
}

py::array avg_pool2d_backward(py::handle dy_obj, const ConvGeometry& g, bool count_include_pad,
                              py::handle div_obj, py::handle dx_obj) {
  return avg_pool2d_call(false, dy_obj, g, count_include_pad, div_obj, dx_obj);
}

void check_size2(const char* fn, const char* name, int64_t a, int64_t b) {
  if (a < 1 || b < 1) {
    value_error(fn, std::string(name) + " must be positive, got (" + to_string(a) + ", " +
                        to_string(b) + ")");
  }
}

// Adaptive average pooling both ways: `src` (n, a, b, c) -> a new or given (n, size, c). The
// forward maps the input to the output (a, b = h, w; size = output_size), the backward
// grad_output to grad_input (a, b = oh, ow; size = input_size). Both kernels take the image's
// (h, w) and the pooled (oh, ow) in that order.
py::array adaptive_avg_pool2d_call(bool forward, py::handle src_obj,
                                   std::pair<int64_t, int64_t> size, py::handle dst_obj) {
  const char* fn = forward ? "adaptive_avg_pool2d_forward" : "adaptive_avg_pool2d_backward";
  const char* src_name = forward ? "input" : "grad_output";
  const char* dst_name = forward ? "out" : "grad_input";
  check_size2(fn, forward ? "output_size" : "input_size", size.first, size.second);
  py::array src = f32_array(fn, src_name, src_obj, 4);
  const int64_t n = src.shape(0), a = src.shape(1), b = src.shape(2), c = src.shape(3);
  if (a < 1 || b < 1 || c < 1) {
    value_error(fn, std::string(src_name) + (forward ? " must have h, w, c >= 1 (n, h, w, c)"
                                                     : " must have oh, ow, c >= 1 (n, oh, ow, c)") +
                        ", got " + shape_str(src));
  }
  py::array dst = out_array(fn, dst_name, dst_obj, {n, size.first, size.second, c});
  require_disjoint(fn, dst_name, dst, src_name, src);
  const float* sp = f32_cptr(src);
  float* dp = f32_ptr(dst);
  {
    py::gil_scoped_release release;
    if (forward) {
      adaptive_avg_pool_forward(n, a, b, c, size.first, size.second, sp, dp);
    } else {
      adaptive_avg_pool_backward(n, size.first, size.second, c, a, b, sp, dp);
    }
  }
  return dst;
}

py::array adaptive_avg_pool2d_forward(py::handle x_obj, std::pair<int64_t, int64_t> size,
                                      py::handle out_obj) {
  return adaptive_avg_pool2d_call(true, x_obj, size, out_obj);
}

py::array adaptive_avg_pool2d_backward(py::handle dy_obj, std::pair<int64_t, int64_t> size,
                                       py::handle dx_obj) {
  return adaptive_avg_pool2d_call(false, dy_obj, size, dx_obj);
}

py::dict pool_scratch_dict(int64_t bytes) {
  GemmScratch s;  // no GEMM: the driver workspace only
  s.add_driver(bytes);
  return scratch_dict(s);
}

py::dict pool2d_scratch(const ConvGeometry& g) {
  check_pool_geometry("pool2d_scratch", g, true);
  return pool_scratch_dict(pool_scratch_bytes(g));
}

py::dict adaptive_avg_pool2d_scratch(std::pair<int64_t, int64_t> input_size,
                                     std::pair<int64_t, int64_t> output_size) {
  const char* fn = "adaptive_avg_pool2d_scratch";
  check_size2(fn, "input_size", input_size.first, input_size.second);
  check_size2(fn, "output_size", output_size.first, output_size.second);
  return pool_scratch_dict(adaptive_pool_scratch_bytes(input_size.first, input_size.second,
                                                       output_size.first, output_size.second));
}

}  // namespace

void register_pooling(py::module_& m) {
  using py::arg;
  m.def("max_pool2d_forward", &max_pool2d_forward, arg("input"), arg("geom"), py::kw_only(),
        arg("out") = py::none(), arg("indices") = py::none(),
        "Max pooling of a channels-last (n, h, w, c) batch as torch (padding -inf, the first "
        "maximum of the window in row-major order, a NaN is the maximum). Returns (out, "
        "indices): out (n, oh, ow, c) float32 and indices int32, each output's window element "
        "(ki * kw + kj) for max_pool2d_backward.");
  m.def("max_pool2d_backward", &max_pool2d_backward, arg("grad_output"), arg("indices"),
        arg("geom"), py::kw_only(), arg("grad_input") = py::none(),
        "dL/dx (n, h, w, c) of max pooling: each output's gradient goes to its window element "
        "`indices`; contributions to one input add in output row-major order.");
  m.def("avg_pool2d_forward", &avg_pool2d_forward, arg("input"), arg("geom"), py::kw_only(),
        arg("count_include_pad") = true, arg("divisor_override") = py::none(),
        arg("out") = py::none(),
        "Average pooling of a channels-last (n, h, w, c) batch with torch's divisor: the window "
        "clipped at the padded edge (count_include_pad) or at the input, or divisor_override.");
  m.def("avg_pool2d_backward", &avg_pool2d_backward, arg("grad_output"), arg("geom"),
        py::kw_only(), arg("count_include_pad") = true, arg("divisor_override") = py::none(),
        arg("grad_input") = py::none(), "dL/dx (n, h, w, c) of avg_pool2d_forward.");
  m.def("adaptive_avg_pool2d_forward", &adaptive_avg_pool2d_forward, arg("input"),
        arg("output_size"), py::kw_only(), arg("out") = py::none(),
        "Adaptive average pooling of a channels-last (n, h, w, c) batch to (n, oh, ow, c) with "
        "torch's windows [floor(i*h/oh), ceil((i+1)*h/oh)).");
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward, arg("grad_output"),
        arg("input_size"), py::kw_only(), arg("grad_input") = py::none(),
        "dL/dx (n, h, w, c) of adaptive_avg_pool2d_forward for input_size (h, w).");
  m.def("pool2d_scratch", &pool2d_scratch, arg("geom"),
        "Bytes of thread-local scratch (reused across calls and only growing) that a max or "
        "average pooling forward + backward with this geometry grows, as conv2d_scratch "
        "reports it ('driver': the calling thread's workspace, its window tables).");
  m.def("adaptive_avg_pool2d_scratch", &adaptive_avg_pool2d_scratch, arg("input_size"),
        arg("output_size"),
        "pool2d_scratch for adaptive average pooling from input_size (h, w) to output_size.");
}

}  // namespace sg::bind
