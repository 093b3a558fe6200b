// Bindings for the elementwise activations, softmax cross-entropy and buffer norms.
#include <cmath>
#include <string>

#include "bindings/checks.h"
#include "layers/activations.h"
#include "layers/softmax_xent.h"
#include "reduce/norm.h"

namespace sg::bind {
namespace {

// Output array for an elementwise op: `out` may be the very input (in place) but not a
// partial overlap of it.
py::array elementwise_out(const char* fn, const py::array& like, py::handle out_obj,
                          std::initializer_list<std::pair<const char*, const py::array*>> ins) {
  if (out_obj.is_none()) {
    std::vector<py::ssize_t> shape(like.shape(), like.shape() + like.ndim());
    return new_f32(shape);
  }
  py::array out = f32_array(fn, "out", out_obj, -1);
  if (out.ndim() != like.ndim() || !std::equal(out.shape(), out.shape() + out.ndim(), like.shape())) {
    value_error(fn, "out must have the input's shape " + shape_str(like) + ", got " + shape_str(out));
  }
  require_writeable(fn, "out", out);
  for (auto& [name, arr] : ins) require_disjoint(fn, "out", out, name, *arr, /*allow_exact=*/true);
  return out;
}

void require_same_shape(const char* fn, const char* name, const py::array& a, const char* ref_name,
                        const py::array& ref) {
  if (a.ndim() != ref.ndim() || !std::equal(a.shape(), a.shape() + a.ndim(), ref.shape())) {
    value_error(fn, std::string(name) + " must have the shape of " + ref_name + " " +
                        shape_str(ref) + ", got " + shape_str(a));
  }
}

Act parse_gelu(const char* fn, const std::string& approximate) {
  if (approximate == "none") return Act::gelu;
  if (approximate == "tanh") return Act::gelu_tanh;
  value_error(fn, "approximate must be 'none' or 'tanh', got '" + approximate + "'");
}

py::array act_forward(const char* fn, Act act, py::handle x_obj, py::handle out_obj, float param) {
  py::array x = f32_array(fn, "x", x_obj, -1);
  py::array out = elementwise_out(fn, x, out_obj, {{"x", &x}});
  const float* xp = f32_cptr(x);
  float* yp = f32_ptr(out);
  const int64_t n = x.size();
  {
    py::gil_scoped_release release;
    activation_kernels().forward(act, yp, xp, n, param);
  }
  return out;
}

py::array act_backward(const char* fn, Act act, py::handle dy_obj, py::handle saved_obj,
                       const char* saved_name, py::handle out_obj, float param) {
  py::array dy = f32_array(fn, "grad_output", dy_obj, -1);
  py::array s = f32_array(fn, saved_name, saved_obj, -1);
  require_same_shape(fn, saved_name, s, "grad_output", dy);
  py::array out = elementwise_out(fn, dy, out_obj, {{"grad_output", &dy}});
  require_disjoint(fn, "out", out, saved_name, s);
  const float* dyp = f32_cptr(dy);
  const float* sp = f32_cptr(s);
  float* dxp = f32_ptr(out);
  const int64_t n = dy.size();
  {
    py::gil_scoped_release release;
    activation_kernels().backward(act, dxp, dyp, sp, n, param);
  }
  return out;
}

py::tuple softmax_cross_entropy(py::handle logits_obj, py::handle labels_obj,
                                const std::string& reduction, double label_smoothing,
                                bool compute_grad, py::handle out_obj) {
  const char* fn = "softmax_cross_entropy";
  py::array x = f32_array(fn, "logits", logits_obj, 2);
  py::array y = int_array(fn, "labels", labels_obj, 1);
  const int64_t B = x.shape(0), C = x.shape(1);
  if (y.shape(0) != B) {
    value_error(fn, "labels must have shape (batch=" + std::to_string(B) + ",) to match logits " +
                        shape_str(x) + ", got " + shape_str(y));
  }
  if (reduction != "mean" && reduction != "sum") {
    value_error(fn, "reduction must be 'mean' or 'sum', got '" + reduction + "'");
  }
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0)) {
    value_error(fn, "label_smoothing must be in [0.0, 1.0], got " + std::to_string(label_smoothing));
  }
  if (B > 0 && C == 0) value_error(fn, "logits must have at least one class, got shape " + shape_str(x));
  const bool i64 = y.itemsize() == 8;
  for (int64_t i = 0; i < B; ++i) {
    const int64_t v = i64 ? static_cast<const int64_t*>(y.data())[i]
                          : static_cast<const int32_t*>(y.data())[i];
    if (v < 0 || v >= C) {
      value_error(fn, "labels[" + std::to_string(i) + "] = " + std::to_string(v) +
                          " is out of range for " + std::to_string(C) + " classes (expected 0 <= label < " +
                          std::to_string(C) + ")");
    }
  }
  py::object grad_obj = py::none();
  float* dp = nullptr;
  if (compute_grad) {
    py::array d;
    if (out_obj.is_none()) {
      d = new_f32({B, C});
    } else {
      d = f32_array(fn, "out", out_obj, 2);
      require_shape(fn, "out", d, {B, C});
      require_writeable(fn, "out", d);
      require_disjoint(fn, "out", d, "logits", x, /*allow_exact=*/true);
    }
    dp = f32_ptr(d);
    grad_obj = d;
  }
  const bool mean = reduction == "mean";
  const float scale = mean ? (B > 0 ? 1.0f / static_cast<float>(B) : 0.0f) : 1.0f;
  const float* xp = f32_cptr(x);
  const void* yp = y.data();
  const float eps = static_cast<float>(label_smoothing);
  double total;
  {
    py::gil_scoped_release release;
    const SoftmaxXentKernels& k = softmax_xent_kernels();
    total = i64 ? k.i64(dp, xp, static_cast<const int64_t*>(yp), B, C, eps, scale)
                : k.i32(dp, xp, static_cast<const int32_t*>(yp), B, C, eps, scale);
  }
  const double loss = mean ? (B > 0 ? total / static_cast<double>(B) : NAN) : total;
  return py::make_tuple(loss, grad_obj);
}

double global_norm(py::handle x_obj, double norm_type) {
  const char* fn = "global_norm";
  py::array x = f32_array(fn, "x", x_obj, -1);
  const bool inf = std::isinf(norm_type) && norm_type > 0;
  if (!inf && norm_type != 2.0) {
    value_error(fn, "norm_type must be 2.0 or inf, got " + std::to_string(norm_type));
  }
  const float* p = f32_cptr(x);
  const int64_t n = x.size();
  py::gil_scoped_release release;
  if (inf) return absmax_f32(p, n);
  return std::sqrt(sumsq_f32(p, n));
}

}  // namespace

void register_ops(py::module_& m) {
  m.def("relu", [](py::handle x, py::handle out) { return act_forward("relu", Act::relu, x, out, 0.f); },
        py::arg("x"), py::kw_only(), py::arg("out") = py::none(), "max(x, 0); NaN stays NaN.");
  m.def("relu_backward",
        [](py::handle dy, py::handle x, py::handle out) {
          return act_backward("relu_backward", Act::relu, dy, x, "x", out, 0.f);
        },
        py::arg("grad_output"), py::arg("x"), py::kw_only(), py::arg("out") = py::none(),
        "grad_output where x > 0, else 0.");
  m.def("leaky_relu",
        [](py::handle x, double slope, py::handle out) {
          return act_forward("leaky_relu", Act::leaky_relu, x, out, static_cast<float>(slope));
        },
        py::arg("x"), py::arg("negative_slope") = 0.01, py::kw_only(), py::arg("out") = py::none(),
        "x where x > 0, else negative_slope * x.");
  m.def("leaky_relu_backward",
        [](py::handle dy, py::handle x, double slope, py::handle out) {
          return act_backward("leaky_relu_backward", Act::leaky_relu, dy, x, "x", out,
                              static_cast<float>(slope));
        },
        py::arg("grad_output"), py::arg("x"), py::arg("negative_slope") = 0.01, py::kw_only(),
        py::arg("out") = py::none(), "grad_output * (1 if x > 0 else negative_slope).");
  m.def("gelu",
        [](py::handle x, const std::string& approx, py::handle out) {
          return act_forward("gelu", parse_gelu("gelu", approx), x, out, 0.f);
        },
        py::arg("x"), py::kw_only(), py::arg("approximate") = "none", py::arg("out") = py::none(),
        "GELU as torch.nn.functional.gelu: approximate='none' (erf) or 'tanh'.");
  m.def("gelu_backward",
        [](py::handle dy, py::handle x, const std::string& approx, py::handle out) {
          return act_backward("gelu_backward", parse_gelu("gelu_backward", approx), dy, x, "x", out, 0.f);
        },
        py::arg("grad_output"), py::arg("x"), py::kw_only(), py::arg("approximate") = "none",
        py::arg("out") = py::none(), "Gradient of gelu with respect to its input x.");
  m.def("tanh", [](py::handle x, py::handle out) { return act_forward("tanh", Act::tanh, x, out, 0.f); },
        py::arg("x"), py::kw_only(), py::arg("out") = py::none(), "tanh(x).");
  m.def("tanh_backward",
        [](py::handle dy, py::handle y, py::handle out) {
          return act_backward("tanh_backward", Act::tanh, dy, y, "y", out, 0.f);
        },
        py::arg("grad_output"), py::arg("y"), py::kw_only(), py::arg("out") = py::none(),
        "grad_output * (1 - y^2), from the forward output y.");
  m.def("sigmoid",
        [](py::handle x, py::handle out) { return act_forward("sigmoid", Act::sigmoid, x, out, 0.f); },
        py::arg("x"), py::kw_only(), py::arg("out") = py::none(), "1 / (1 + exp(-x)).");
  m.def("sigmoid_backward",
        [](py::handle dy, py::handle y, py::handle out) {
          return act_backward("sigmoid_backward", Act::sigmoid, dy, y, "y", out, 0.f);
        },
        py::arg("grad_output"), py::arg("y"), py::kw_only(), py::arg("out") = py::none(),
        "grad_output * y * (1 - y), from the forward output y.");
  m.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("labels"),
        py::kw_only(), py::arg("reduction") = "mean", py::arg("label_smoothing") = 0.0,
        py::arg("compute_grad").noconvert() = true, py::arg("out") = py::none(),
        R"doc(Softmax cross-entropy of (batch, classes) logits with integer labels, in one pass.

Returns (loss, dlogits): loss is a Python float ('mean' or 'sum' over rows, as
torch.nn.functional.cross_entropy), dlogits the gradient of that loss (None when
compute_grad=False). Stable for logits of any finite magnitude. `out` may be logits itself.)doc");
  m.def("global_norm", &global_norm, py::arg("x"), py::arg("norm_type") = 2.0,
        "L2 (norm_type=2) or max-abs (norm_type=inf) norm of a float32 buffer. Bitwise identical "
        "for any thread count and ISA path.");
}

}  // namespace sg::bind
