// Bindings for cpp/layers/elem_loss.h: MSE, L1, SmoothL1, Huber, BCE and BCE with logits, one
// body for all. Every argument is validated before any output is touched.
#include <cmath>
#include <cstdint>
#include <string>

#include "bindings/checks.h"
#include "bindings/layers/loss_common.h"
#include "layers/elem_loss.h"

namespace sg::bind {
namespace {

// Optional float32 array of the input's shape (weights already broadcast by the caller).
const float* opt_like(const char* fn, const char* name, const py::handle& obj, const py::array& p,
                      py::array* keep) {
  if (obj.is_none()) return nullptr;
  *keep = f32_array(fn, name, obj, -1);
  require_shape_like(fn, name, *keep, "the input's shape", p);
  const float* w = f32_cptr(*keep);
  require_nonnegative(fn, name, w, keep->size());
  return w;
}

py::tuple elem_loss(ElemLoss kind, const char* fn, py::handle input_obj, py::handle target_obj,
                    py::handle weight_obj, py::handle pos_weight_obj, const std::string& reduction,
                    double param, bool compute_grad, py::handle out_obj) {
  py::array p = f32_array(fn, "input", input_obj, -1);
  py::array t = f32_array(fn, "target", target_obj, -1);
  require_shape_like(fn, "target", t, "the input's shape", p);
  const Reduction red = loss_reduction(fn, reduction);
  py::array wkeep, pwkeep;
  const float* w = opt_like(fn, "weight", weight_obj, p, &wkeep);
  const float* pw = opt_like(fn, "pos_weight", pos_weight_obj, p, &pwkeep);
  const int64_t n = p.size();
  if (kind == ElemLoss::kSmoothL1 && !(param >= 0.0)) {
    value_error(fn, "beta must be non-negative, got " + std::to_string(param));
  }
  if (kind == ElemLoss::kHuber && !(param > 0.0)) {
    value_error(fn, "delta must be positive, got " + std::to_string(param));
  }
  if (kind == ElemLoss::kSmoothL1 && param == 0.0) kind = ElemLoss::kL1;  // as torch: beta 0 is L1
  if (kind == ElemLoss::kBce) {
    const float* pp = f32_cptr(p);
    for (int64_t i = 0; i < n; ++i) {
      if (!(pp[i] >= 0.0f && pp[i] <= 1.0f)) {
        value_error(fn, "all elements of input should be between 0 and 1, got input.flat[" +
                            std::to_string(i) + "] = " + std::to_string(pp[i]));
      }
    }
  }
  py::object grad_obj = py::none();
  float* gp = nullptr;
  if (compute_grad) {
    py::array g = elementwise_out(fn, p, "the input's shape", out_obj,
                                  {{"input", &p}, {"target", &t}});
    if (w) require_disjoint(fn, "out", g, "weight", wkeep);
    if (pw) require_disjoint(fn, "out", g, "pos_weight", pwkeep);
    gp = f32_ptr(g);
    grad_obj = g;
  }
  float* lp;
  const py::object items =
      loss_items(red, std::vector<py::ssize_t>(p.shape(), p.shape() + p.ndim()), &lp);
  const float scale = loss_scale(red, static_cast<double>(n));
  const ElemLossArgs args{kind, static_cast<float>(param), f32_cptr(p), f32_cptr(t), w, pw, gp, lp, scale};
  double total;
  {
    py::gil_scoped_release release;
    total = elem_loss_f32(args, n);
  }
  return py::make_tuple(loss_value(red, total, static_cast<double>(n), items), grad_obj);
}

template <ElemLoss K>
void def_loss(py::module_& m, const char* name, const char* param_name, double param_default,
              bool pos_weight, const char* doc) {
  auto body = [name](py::handle input, py::handle target, py::handle weight, py::handle pos_w,
                     const std::string& reduction, double param, bool compute_grad, py::handle out) {
    return elem_loss(K, name, input, target, weight, pos_w, reduction, param, compute_grad, out);
  };
  if (pos_weight) {
    m.def(name, [body](py::handle i, py::handle t, py::handle w, py::handle pw, const std::string& r,
                       bool cg, py::handle o) { return body(i, t, w, pw, r, 0.0, cg, o); },
          py::arg("input"), py::arg("target"), py::kw_only(), py::arg("weight") = py::none(),
          py::arg("pos_weight") = py::none(), py::arg("reduction") = "mean",
          py::arg("compute_grad").noconvert() = true, py::arg("out") = py::none(), doc);
  } else if (param_name) {
    m.def(name, [body](py::handle i, py::handle t, const std::string& r, double prm, bool cg,
                       py::handle o) { return body(i, t, py::none(), py::none(), r, prm, cg, o); },
          py::arg("input"), py::arg("target"), py::kw_only(), py::arg("reduction") = "mean",
          py::arg(param_name) = param_default, py::arg("compute_grad").noconvert() = true,
          py::arg("out") = py::none(), doc);
  } else {
    m.def(name, [body](py::handle i, py::handle t, py::handle w, const std::string& r, bool cg,
                       py::handle o) { return body(i, t, w, py::none(), r, 0.0, cg, o); },
          py::arg("input"), py::arg("target"), py::kw_only(), py::arg("weight") = py::none(),
          py::arg("reduction") = "mean", py::arg("compute_grad").noconvert() = true,
          py::arg("out") = py::none(), doc);
  }
}

}  // namespace

void register_elem_loss(py::module_& m) {
  const char* tail =
      " Returns (loss, grad): loss a Python float for 'mean'/'sum', the float32 per-element losses "
      "for 'none'; grad = d loss / d input, for 'none' that of the sum (None when compute_grad="
      "False). weight (and pos_weight) must already have the input's shape. The sum is "
      "deterministic (double lanes, fixed chunks).";
  static const std::string mse = std::string("Mean squared error as torch.nn.functional.mse_loss.") + tail;
  static const std::string l1 = std::string("Absolute error as torch.nn.functional.l1_loss.") + tail;
  static const std::string sl1 = std::string("torch.nn.functional.smooth_l1_loss (beta 0 is L1).") + tail;
  static const std::string hub = std::string("torch.nn.functional.huber_loss (delta > 0).") + tail;
  static const std::string bce = std::string(
      "torch.nn.functional.binary_cross_entropy on probabilities in [0, 1] (logs clamped at -100).") + tail;
  static const std::string bcel = std::string(
      "torch.nn.functional.binary_cross_entropy_with_logits, stable for any finite logit.") + tail;
  // MSE and L1 take no weight in torch; the binding has none either.
  m.def("mse_loss", [](py::handle i, py::handle t, const std::string& r, bool cg, py::handle o) {
          return elem_loss(ElemLoss::kMse, "mse_loss", i, t, py::none(), py::none(), r, 0.0, cg, o);
        }, py::arg("input"), py::arg("target"), py::kw_only(), py::arg("reduction") = "mean",
        py::arg("compute_grad").noconvert() = true, py::arg("out") = py::none(), mse.c_str());
  m.def("l1_loss", [](py::handle i, py::handle t, const std::string& r, bool cg, py::handle o) {
          return elem_loss(ElemLoss::kL1, "l1_loss", i, t, py::none(), py::none(), r, 0.0, cg, o);
        }, py::arg("input"), py::arg("target"), py::kw_only(), py::arg("reduction") = "mean",
        py::arg("compute_grad").noconvert() = true, py::arg("out") = py::none(), l1.c_str());
  def_loss<ElemLoss::kSmoothL1>(m, "smooth_l1_loss", "beta", 1.0, false, sl1.c_str());
  def_loss<ElemLoss::kHuber>(m, "huber_loss", "delta", 1.0, false, hub.c_str());
  def_loss<ElemLoss::kBce>(m, "binary_cross_entropy", nullptr, 0.0, false, bce.c_str());
  def_loss<ElemLoss::kBceLogits>(m, "binary_cross_entropy_with_logits", nullptr, 0.0, true, bcel.c_str());
}

}  // namespace sg::bind
