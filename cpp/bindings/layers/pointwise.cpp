// Bindings for cpp/layers/pointwise.h: residual add, dropout and the MSE loss. Every argument
// is validated before any output is touched.
#include <cmath>
#include <cstdint>
#include <string>

#include "bindings/checks.h"
#include "layers/pointwise.h"

namespace sg::bind {
namespace {

using std::to_string;

py::array add(py::handle a_obj, py::handle b_obj, py::handle out_obj) {
  const char* fn = "add";
  py::array a = f32_array(fn, "a", a_obj, -1);
  py::array b = f32_array(fn, "b", b_obj, -1);
  require_same_shape(fn, "b", b, "a", a);
  py::array y = elementwise_out(fn, a, "the shape of a", out_obj, {{"a", &a}, {"b", &b}});
  const float* ap = f32_cptr(a);
  const float* bp = f32_cptr(b);
  float* yp = f32_ptr(y);
  const int64_t n = a.size();
  {
    py::gil_scoped_release release;
    add_f32(yp, ap, bp, n);
  }
  return y;
}

py::array dropout(py::handle x_obj, double p, uint64_t seed, py::handle out_obj) {
  const char* fn = "dropout";
  py::array x = f32_array(fn, "x", x_obj, -1);
  if (!(p >= 0.0 && p <= 1.0)) {
    value_error(fn, "dropout probability has to be between 0 and 1, but got " + to_string(p));
  }
  py::array y = elementwise_out(fn, x, "the shape of x", out_obj, {{"x", &x}});
  // keep with probability 1 - p: threshold = round(p * 2^32); p == 1 drops all (scale unused).
  const double t = std::nearbyint(p * 4294967296.0);
  const bool all = p >= 1.0;
  const uint32_t threshold = all ? 0u : static_cast<uint32_t>(t > 4294967295.0 ? 4294967295.0 : t);
  const float scale = all ? 0.0f : static_cast<float>(1.0 / (1.0 - p));
  const float* xp = f32_cptr(x);
  float* yp = f32_ptr(y);
  const int64_t n = x.size();
  {
    py::gil_scoped_release release;
    dropout_f32(yp, xp, n, seed, threshold, scale);
  }
  return y;
}

py::tuple mse_loss(py::handle pred_obj, py::handle target_obj, const std::string& reduction,
                   bool compute_grad, py::handle out_obj) {
  const char* fn = "mse_loss";
  py::array p = f32_array(fn, "input", pred_obj, -1);
  py::array t = f32_array(fn, "target", target_obj, -1);
  require_shape_like(fn, "target", t, "the input's shape", p);
  if (reduction != "mean" && reduction != "sum") {
    value_error(fn, "reduction must be 'mean' or 'sum', got '" + reduction + "'");
  }
  const int64_t n = p.size();
  const bool mean = reduction == "mean";
  py::object grad_obj = py::none();
  float* gp = nullptr;
  if (compute_grad) {
    py::array g = elementwise_out(fn, p, "the input's shape", out_obj,
                                  {{"input", &p}, {"target", &t}});
    gp = f32_ptr(g);
    grad_obj = g;
  }
  const float scale = mean ? (n > 0 ? static_cast<float>(2.0 / static_cast<double>(n)) : 0.0f) : 2.0f;
  const float* pp = f32_cptr(p);
  const float* tp = f32_cptr(t);
  double total;
  {
    py::gil_scoped_release release;
    total = mse_f32(gp, pp, tp, n, scale);
  }
  const double loss = mean ? (n > 0 ? total / static_cast<double>(n) : NAN) : total;
  return py::make_tuple(loss, grad_obj);
}

}  // namespace

void register_pointwise(py::module_& m) {
  m.def("add", &add, py::arg("a"), py::arg("b"), py::kw_only(), py::arg("out") = py::none(),
        "a + b elementwise (same shapes); out may be a or b.");
  m.def("dropout", &dropout, py::arg("x"), py::arg("p"), py::arg("seed"), py::kw_only(),
        py::arg("out") = py::none(),
        "x * mask / (1 - p) with mask[i] = hash(seed, i) >= p * 2^32 (counter-based: the same "
        "seed gives the same mask for any thread count or ISA). The backward is "
        "dropout(grad_output, p, seed) with the forward's seed.");
  m.def("mse_loss", &mse_loss, py::arg("input"), py::arg("target"), py::kw_only(),
        py::arg("reduction") = "mean", py::arg("compute_grad") = true, py::arg("out") = py::none(),
        "Mean squared error as torch.nn.functional.mse_loss ('mean' or 'sum'); returns "
        "(loss, grad) with grad = d loss / d input (None when compute_grad=False). The sum is "
        "deterministic (double lanes, fixed chunks).");
}

}  // namespace sg::bind
