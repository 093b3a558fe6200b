// Binding for cpp/layers/softmax_xent.h: softmax cross-entropy with integer labels, the loss
// and its gradient in one pass.
#include <cmath>
#include <string>

#include "bindings/checks.h"
#include "layers/softmax_xent.h"

namespace sg::bind {
namespace {

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

}  // namespace

void register_softmax_xent(py::module_& m) {
  m.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("labels"),
        py::kw_only(), py::arg("reduction") = "mean", py::arg("label_smoothing") = 0.0,
        py::arg("compute_grad").noconvert() = true, py::arg("out") = py::none(),
        R"doc(Softmax cross-entropy of (batch, classes) logits with integer labels, in one pass.

Returns (loss, dlogits): loss is a Python float ('mean' or 'sum' over rows, as
torch.nn.functional.cross_entropy), dlogits the gradient of that loss (None when
compute_grad=False). Stable for logits of any finite magnitude. `out` may be logits itself.)doc");
}

}  // namespace sg::bind
