// Bindings for cpp/layers/softmax_xent.h (softmax cross-entropy, the loss and its gradient in one
// pass) and cpp/layers/nll.h (NLL on log-probabilities). Every argument is validated before any
// output is touched.
#include <cmath>
#include <string>

#include "bindings/checks.h"
#include "bindings/layers/loss_common.h"
#include "layers/nll.h"
#include "layers/softmax_xent.h"

namespace sg::bind {
namespace {

using std::to_string;

// The gradient output (batch, classes): new, or `out` (which may be the input itself).
float* grad_out(const char* fn, const py::array& x, const char* x_name, bool compute_grad,
                const py::handle& out_obj, std::initializer_list<std::pair<const char*, const py::array*>> others,
                py::object* grad_obj) {
  if (!compute_grad) return nullptr;
  const int64_t B = x.shape(0), C = x.shape(1);
  py::array d;
  if (out_obj.is_none()) {
    d = new_f32({B, C});
  } else {
    d = f32_array(fn, "out", out_obj, 2);
    require_shape(fn, "out", d, {B, C});
    require_writeable(fn, "out", d);
    require_disjoint(fn, "out", d, x_name, x, /*allow_exact=*/true);
    require_disjoint_from(fn, "out", d, others);
  }
  *grad_obj = d;
  return f32_ptr(d);
}

py::tuple softmax_cross_entropy(py::handle logits_obj, py::handle labels_obj, py::handle weight_obj,
                                int64_t ignore_index, const std::string& reduction,
                                double label_smoothing, bool compute_grad, py::handle out_obj) {
  const char* fn = "softmax_cross_entropy";
  py::array x = f32_array(fn, "logits", logits_obj, 2);
  const int64_t B = x.shape(0), C = x.shape(1);
  const Reduction red = loss_reduction(fn, reduction);
  if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0)) {
    value_error(fn, "label_smoothing must be in [0.0, 1.0], got " + to_string(label_smoothing));
  }
  if (B > 0 && C == 0) value_error(fn, "logits must have at least one class, got shape " + shape_str(x));
  py::array wkeep;
  const float* w = class_weight(fn, weight_obj, C, &wkeep);
  // Float targets are probabilities of the logits' shape (torch: ignore_index does not apply,
  // 'mean' divides by the batch); integer targets are class indices.
  // A float array that is not 2-D float32 reads as class indices of the wrong dtype.
  const bool soft = py::isinstance<py::array>(labels_obj) &&
                    py::reinterpret_borrow<py::array>(labels_obj).dtype().kind() == 'f';
  if (soft) {
    py::array a = py::reinterpret_borrow<py::array>(labels_obj);
    if (a.itemsize() != 4 || a.ndim() != 2) {
      type_error(fn, "labels must have dtype int32 or int64, got " + dtype_str(a) + " array of shape " +
                         shape_str(a) + " (class indices; float32 probabilities must have the logits' shape " +
                         shape_str(x) + ")");
    }
  }
  py::array y, t;
  double count = static_cast<double>(B);
  if (soft) {
    t = f32_array(fn, "labels", labels_obj, 2);
    require_shape_like(fn, "labels", t, "(probabilities) the logits' shape", x);
  } else {
    y = class_labels(fn, labels_obj, x, "logits", ignore_index, w, &count);
  }
  py::object grad_obj = py::none();
  float* dp = grad_out(fn, x, "logits", compute_grad, out_obj,
                       {{"labels", soft ? &t : nullptr}, {"weight", w ? &wkeep : nullptr}}, &grad_obj);
  float* rl;
  const py::object items = loss_items(red, {B}, &rl);
  const float scale = loss_scale(red, count);
  const XentArgs args{dp, rl, f32_cptr(x), w, soft ? f32_cptr(t) : nullptr, B, C, ignore_index,
                      static_cast<float>(label_smoothing), scale};
  double total;
  {
    py::gil_scoped_release release;
    const SoftmaxXentKernels& k = softmax_xent_kernels();
    if (soft) {
      total = k.soft(args);
    } else if (y.itemsize() == 8) {
      total = k.i64(args, static_cast<const int64_t*>(y.data()));
    } else {
      total = k.i32(args, static_cast<const int32_t*>(y.data()));
    }
  }
  return py::make_tuple(loss_value(red, total, count, items), grad_obj);
}

py::tuple nll_loss(py::handle input_obj, py::handle labels_obj, py::handle weight_obj,
                   int64_t ignore_index, const std::string& reduction, bool compute_grad,
                   py::handle out_obj) {
  const char* fn = "nll_loss";
  py::array x = f32_array(fn, "input", input_obj, 2);
  const int64_t B = x.shape(0), C = x.shape(1);
  const Reduction red = loss_reduction(fn, reduction);
  py::array wkeep;
  const float* w = class_weight(fn, weight_obj, C, &wkeep);
  double count = 0.0;
  py::array y = class_labels(fn, labels_obj, x, "input", ignore_index, w, &count);
  py::object grad_obj = py::none();
  float* dp = grad_out(fn, x, "input", compute_grad, out_obj, {{"weight", w ? &wkeep : nullptr}},
                       &grad_obj);
  float* rl;
  const py::object items = loss_items(red, {B}, &rl);
  const float scale = loss_scale(red, count);
  const float* xp = f32_cptr(x);
  double total;
  {
    py::gil_scoped_release release;
    total = y.itemsize() == 8
                ? nll_f32(dp, rl, xp, static_cast<const int64_t*>(y.data()), w, B, C, ignore_index, scale)
                : nll_f32(dp, rl, xp, static_cast<const int32_t*>(y.data()), w, B, C, ignore_index, scale);
  }
  return py::make_tuple(loss_value(red, total, count, items), grad_obj);
}

}  // namespace

void register_softmax_xent(py::module_& m) {
  m.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("labels"),
        py::kw_only(), py::arg("weight") = py::none(), py::arg("ignore_index") = -100,
        py::arg("reduction") = "mean", py::arg("label_smoothing") = 0.0,
        py::arg("compute_grad").noconvert() = true, py::arg("out") = py::none(),
        R"doc(Softmax cross-entropy of (batch, classes) logits, as torch.nn.functional.cross_entropy,
in one pass: labels are int32/int64 class indices (batch,) (ignore_index rows count for
nothing; 'mean' divides by the summed weight of the others) or float32 probabilities of the
logits' shape ('mean' divides by the batch). weight: optional (classes,) class weights.

Returns (loss, dlogits): loss is a Python float for 'mean'/'sum', the float32 (batch,) row
losses for 'none'; dlogits the gradient of that loss, for 'none' of the rows' sum (None when
compute_grad=False). Stable for logits of any finite magnitude. `out` may be logits itself.)doc");
  m.def("nll_loss", &nll_loss, py::arg("input"), py::arg("labels"), py::kw_only(),
        py::arg("weight") = py::none(), py::arg("ignore_index") = -100, py::arg("reduction") = "mean",
        py::arg("compute_grad").noconvert() = true, py::arg("out") = py::none(),
        R"doc(Negative log-likelihood of (batch, classes) log-probabilities with int32/int64 labels,
as torch.nn.functional.nll_loss (weight, ignore_index, reduction as softmax_cross_entropy).
Returns (loss, dinput) as softmax_cross_entropy.)doc");
}

}  // namespace sg::bind
