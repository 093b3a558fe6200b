// Bindings for cpp/layers/activations.h: the elementwise activations (ReLU, leaky ReLU, GELU,
// tanh, sigmoid, SiLU, ELU, softplus) and their backwards, each out-of-place or into `out`.
#include <string>

#include "bindings/checks.h"
#include "layers/activations.h"

namespace sg::bind {
namespace {

Act parse_gelu(const char* fn, const std::string& approximate) {
  if (approximate == "none") return Act::gelu;
  if (approximate == "tanh") return Act::gelu_tanh;
  value_error(fn, "approximate must be 'none' or 'tanh', got '" + approximate + "'");
}

py::array act_forward(const char* fn, Act act, py::handle x_obj, py::handle out_obj,
                      ActParam param) {
  py::array x = f32_array(fn, "x", x_obj, -1);
  py::array out = elementwise_out(fn, x, "the input's shape", out_obj, {{"x", &x}});
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
                       const char* saved_name, py::handle out_obj, ActParam param) {
  py::array dy = f32_array(fn, "grad_output", dy_obj, -1);
  py::array s = f32_array(fn, saved_name, saved_obj, -1);
  require_same_shape(fn, saved_name, s, "grad_output", dy);
  py::array out = elementwise_out(fn, dy, "the input's shape", out_obj, {{"grad_output", &dy}});
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

template <class>
using Real = double;

// `name` and `name`_backward; the backward reads the saved tensor `saved` ("x": the forward's
// input, "y": its output). params: the activation's real parameters (py::arg("alpha") = 1.0,
// ...), taken by both after their arrays, positionally or by name, and passed on as ActParam's
// a, b in order.
template <class... Param>
void def_act(py::module_& m, const char* name, Act act, const char* saved, const char* doc,
             const char* backward_doc, Param... params) {
  m.def(name, [name = std::string(name), act](py::handle x, Real<Param>... p, py::handle out) {
          return act_forward(name.c_str(), act, x, out, ActParam{static_cast<float>(p)...});
        },
        py::arg("x"), params..., py::kw_only(), py::arg("out") = py::none(), doc);
  const std::string backward = std::string(name) + "_backward";
  m.def(backward.c_str(),
        [backward, act, saved = std::string(saved)](py::handle dy, py::handle s, Real<Param>... p,
                                                    py::handle out) {
          return act_backward(backward.c_str(), act, dy, s, saved.c_str(), out,
                              ActParam{static_cast<float>(p)...});
        },
        py::arg("grad_output"), py::arg(saved), params..., py::kw_only(),
        py::arg("out") = py::none(), backward_doc);
}

}  // namespace

void register_activations(py::module_& m) {
  def_act(m, "relu", Act::relu, "x", "max(x, 0); NaN stays NaN.",
          "grad_output where x > 0, else 0.");
  def_act(m, "leaky_relu", Act::leaky_relu, "x", "x where x > 0, else negative_slope * x.",
          "grad_output * (1 if x > 0 else negative_slope).", py::arg("negative_slope") = 0.01);
  m.def("gelu",
        [](py::handle x, const std::string& approx, py::handle out) {
          return act_forward("gelu", parse_gelu("gelu", approx), x, out, {});
        },
        py::arg("x"), py::kw_only(), py::arg("approximate") = "none", py::arg("out") = py::none(),
        "GELU as torch.nn.functional.gelu: approximate='none' (erf) or 'tanh'.");
  m.def("gelu_backward",
        [](py::handle dy, py::handle x, const std::string& approx, py::handle out) {
          return act_backward("gelu_backward", parse_gelu("gelu_backward", approx), dy, x, "x",
                              out, {});
        },
        py::arg("grad_output"), py::arg("x"), py::kw_only(), py::arg("approximate") = "none",
        py::arg("out") = py::none(), "Gradient of gelu with respect to its input x.");
  def_act(m, "tanh", Act::tanh, "y", "tanh(x).",
          "grad_output * (1 - y^2), from the forward output y.");
  def_act(m, "sigmoid", Act::sigmoid, "y", "1 / (1 + exp(-x)).",
          "grad_output * y * (1 - y), from the forward output y.");
  def_act(m, "silu", Act::silu, "x", "x * sigmoid(x).",
          "grad_output * sigmoid(x) * (1 + x * (1 - sigmoid(x))).");
  def_act(m, "elu", Act::elu, "x", "x where x > 0, else alpha * expm1(x).",
          "grad_output * (1 if x > 0 else alpha * exp(x)).", py::arg("alpha") = 1.0);
  def_act(m, "softplus", Act::softplus, "x",
          "log1p(exp(beta * x)) / beta, and x where beta * x > threshold.",
          "grad_output * sigmoid(beta * x), and grad_output where beta * x > threshold.",
          py::arg("beta") = 1.0, py::arg("threshold") = 20.0);
}

}  // namespace sg::bind
