// Bindings for the layer kernels: Linear and BatchNorm1d (the elementwise ones are in
// bind_layers_pointwise.cpp). Each
// nn layer's forward or backward is one call here; every argument is validated before any
// output is touched, so a rejected call leaves parameters, gradients and buffers unchanged.
#include <cmath>
#include <cstdint>
#include <string>

#include <omp.h>

#include "common/parallel.h"
#include <pybind11/stl.h>

#include "bindings/checks.h"
#include "layers/batchnorm.h"
#include "layers/linear.h"

namespace sg::bind {
namespace {

using std::to_string;

// An in-place per-parameter array (gradient, running statistic): never converted.
py::array inplace_array(const char* fn, const char* name, py::handle obj,
                        std::initializer_list<int64_t> shape) {
  py::array a = f32_array(fn, name, obj, static_cast<int>(shape.size()));
  require_shape(fn, name, a, shape);
  require_writeable(fn, name, a);
  return a;
}

// An output array: allocated when None, else checked like an in-place array.
py::array out_array(const char* fn, const char* name, py::handle obj,
                    std::initializer_list<int64_t> shape) {
  if (obj.is_none()) return new_f32(std::vector<py::ssize_t>(shape.begin(), shape.end()));
  return inplace_array(fn, name, obj, shape);
}

Activation parse_act(const char* fn, const std::string& s) {
  if (s == "none") return Activation::none;
  if (s == "relu") return Activation::relu;
  value_error(fn, "activation must be 'none' or 'relu', got '" + s + "'");
}

py::array linear_forward(py::handle x_obj, py::handle w_obj, py::handle b_obj, py::handle out_obj,
                         const std::string& activation) {
  const char* fn = "linear_forward";
  const Activation act = parse_act(fn, activation);
  py::array w = f32_array(fn, "weight", w_obj, 2);
  const int64_t out_f = w.shape(0), in_f = w.shape(1);
  py::array x = f32_array(fn, "input", x_obj, -1);
  if (x.ndim() != 2 || x.shape(1) != in_f) {
    value_error(fn, "input must have shape (batch, in_features=" + to_string(in_f) +
                        ") for weight " + shape_str(w) + ", got " + shape_str(x));
  }
  const int64_t batch = x.shape(0);
  const float* bp = nullptr;
  py::array b;
  if (!b_obj.is_none()) {
    b = f32_array(fn, "bias", b_obj, 1);
    require_shape(fn, "bias", b, {out_f});
    bp = f32_cptr(b);
  }
  py::array y = out_array(fn, "out", out_obj, {batch, out_f});
  require_disjoint(fn, "out", y, "input", x);
  require_disjoint(fn, "out", y, "weight", w);
  if (bp) require_disjoint(fn, "out", y, "bias", b);
  const float* xp = f32_cptr(x);
  const float* wp = f32_cptr(w);
  float* yp = f32_ptr(y);
  {
    py::gil_scoped_release release;
    linear_forward_f32(yp, xp, wp, bp, batch, in_f, out_f, act);
  }
  return y;
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
  py::array dy = f32_array(fn, "grad_output", dy_obj, -1);
  if (dy.ndim() != 2 || dy.shape(0) != batch || dy.shape(1) != out_f) {
    value_error(fn, "grad_output must have the output's shape (batch=" + to_string(batch) +
                        ", out_features=" + to_string(out_f) + "), got " + shape_str(dy));
  }
  py::array dw = inplace_array(fn, "grad_weight", dw_obj, {out_f, in_f});
  float* dbp = nullptr;
  py::array db;
  if (!db_obj.is_none()) {
    db = inplace_array(fn, "grad_bias", db_obj, {out_f});
    require_disjoint(fn, "grad_bias", db, "grad_output", dy);
    require_disjoint(fn, "grad_bias", db, "grad_weight", dw);
    dbp = f32_ptr(db);
  }
  for (auto [name, arr] : {std::pair<const char*, py::array*>{"grad_output", &dy}, {"input", &x},
                           {"weight", &w}}) {
    require_disjoint(fn, "grad_weight", dw, name, *arr);
  }
  py::object dx_ret = py::none();
  float* dxp = nullptr;
  if (compute_grad_input) {
    py::array dx = out_array(fn, "grad_input", dx_obj, {batch, in_f});
    for (auto [name, arr] : {std::pair<const char*, py::array*>{"grad_output", &dy}, {"weight", &w},
                             {"grad_weight", &dw}}) {
      require_disjoint(fn, "grad_input", dx, name, *arr);
    }
    // dx is computed after everything that reads the input: it may be the input itself
    require_disjoint(fn, "grad_input", dx, "input", x, /*allow_exact=*/true);
    if (dbp) require_disjoint(fn, "grad_input", dx, "grad_bias", db);
    dxp = f32_ptr(dx);
    dx_ret = dx;
  }
  const float* dyp = f32_cptr(dy);
  const float* xp = f32_cptr(x);
  const float* wp = f32_cptr(w);
  float* dwp = f32_ptr(dw);
  {
    py::gil_scoped_release release;
    linear_backward_f32(dxp, dwp, dbp, dyp, xp, wp, batch, in_f, out_f, accumulate ? 1.0f : 0.0f,
                        acc_b ? 1.0f : 0.0f);
  }
  return dx_ret;
}

// num_batches_tracked: a writeable, aligned, native int64 array of one element, below the
// int64 maximum (so that incrementing it cannot overflow).
int64_t* batch_counter(const char* fn, py::handle obj) {
  if (!py::isinstance<py::array>(obj)) {
    type_error(fn, "num_batches_tracked must be a writeable int64 array with one element, got " +
                       py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  }
  py::array t = py::reinterpret_borrow<py::array>(obj);
  if (t.dtype().kind() != 'i' || t.itemsize() != 8 || t.dtype().byteorder() == '>' ||
      t.size() != 1) {
    type_error(fn, "num_batches_tracked must be a writeable int64 array with one element, got " +
                       dtype_str(t) + " array of shape " + shape_str(t));
  }
  require_writeable(fn, "num_batches_tracked", t);
  require_aligned(fn, "num_batches_tracked", t);
  auto* p = static_cast<int64_t*>(t.mutable_data());
  if (*p == INT64_MAX) {
    value_error(fn, "num_batches_tracked is at the int64 maximum, got " + to_string(*p));
  }
  return p;
}

// Optional per-channel float32 array of shape (c,): null pointer when None.
const float* opt_channel(const char* fn, const char* name, py::handle obj, int64_t c, py::array* keep) {
  if (obj.is_none()) return nullptr;
  *keep = f32_array(fn, name, obj, 1);
  require_shape(fn, name, *keep, {c});
  return f32_cptr(*keep);
}

py::array batchnorm_forward(py::handle x_obj, py::handle g_obj, py::handle b_obj,
                            py::handle rm_obj, py::handle rv_obj, py::handle nbt_obj,
                            py::handle sm_obj, py::handle si_obj, bool use_batch_stats,
                            py::handle momentum_obj, double eps, py::handle out_obj,
                            const std::string& activation) {
  const char* fn = "batchnorm_forward";
  const bool relu = parse_act(fn, activation) == Activation::relu;
  py::array sm = f32_array(fn, "save_mean", sm_obj, 1);
  const int64_t c = sm.shape(0);
  py::array x = f32_array(fn, "input", x_obj, -1);
  if (x.ndim() != 2 || x.shape(1) != c) {
    value_error(fn, "input must have shape (batch, num_features=" + to_string(c) + "), got " +
                        shape_str(x));
  }
  const int64_t n = x.shape(0);
  py::array si = inplace_array(fn, "save_invstd", si_obj, {c});
  require_writeable(fn, "save_mean", sm);
  py::array g, b, rm, rv;
  const float* gp = opt_channel(fn, "weight", g_obj, c, &g);
  const float* bp = opt_channel(fn, "bias", b_obj, c, &b);
  const bool running = !rm_obj.is_none();
  if (running != !rv_obj.is_none()) {
    value_error(fn, std::string("running_mean and running_var must both be given or both be "
                                "None, got ") + (running ? "running_var" : "running_mean") +
                        "=None and the other an array");
  }
  if (!running && !use_batch_stats) {
    value_error(fn, "running_mean and running_var are required when use_batch_stats=False "
                    "(normalising by running statistics), got None");
  }
  // Updated in training, only read otherwise.
  const bool update = use_batch_stats && running;
  if (running) {
    rm = f32_array(fn, "running_mean", rm_obj, 1);
    rv = f32_array(fn, "running_var", rv_obj, 1);
    require_shape(fn, "running_mean", rm, {c});
    require_shape(fn, "running_var", rv, {c});
    if (update) {
      require_writeable(fn, "running_mean", rm);
      require_writeable(fn, "running_var", rv);
    }
  }
  if (!(eps >= 0.0)) value_error(fn, "eps must be >= 0, got " + to_string(eps));
  if (use_batch_stats && n <= 1) {
    value_error(fn, "Expected more than 1 value per channel when training, got input of shape " +
                        shape_str(x));
  }
  // num_batches_tracked (training only) is incremented when given, as torch's module does.
  int64_t* nbt = use_batch_stats && !nbt_obj.is_none() ? batch_counter(fn, nbt_obj) : nullptr;
  float momentum = 0.0f;
  if (update) {
    if (momentum_obj.is_none()) {
      // cumulative average; torch's factor is 0 without a counter
      if (nbt && *nbt < 0) {
        value_error(fn, "num_batches_tracked must be >= 0 for momentum=None (cumulative "
                        "average), got " + to_string(*nbt));
      }
      momentum = nbt ? static_cast<float>(1.0 / static_cast<double>(*nbt + 1)) : 0.0f;
    } else {
      double m = 0.0;
      try {
        m = momentum_obj.cast<double>();
      } catch (const py::cast_error&) {
        type_error(fn, "momentum must be a float in [0, 1] or None, got " +
                           py::str(py::type::of(momentum_obj).attr("__name__")).cast<std::string>());
      }
      if (!(m >= 0.0 && m <= 1.0)) value_error(fn, "momentum must be in [0, 1] or None, got " + to_string(m));
      momentum = static_cast<float>(m);
    }
  }
  py::array y = out_array(fn, "out", out_obj, {n, c});
  require_disjoint(fn, "out", y, "input", x);
  const float* xp = f32_cptr(x);
  float* yp = f32_ptr(y);
  float* smp = f32_ptr(sm);
  float* sip = f32_ptr(si);
  float* rmp = update ? f32_ptr(rm) : nullptr;
  float* rvp = update ? f32_ptr(rv) : nullptr;
  const float* mean = running ? f32_cptr(rm) : nullptr;  // non-null when !use_batch_stats
  const float* var = running ? f32_cptr(rv) : nullptr;
  const float e = static_cast<float>(eps);
  if (nbt) *nbt += 1;
  {
    py::gil_scoped_release release;
    const BatchNormKernels& k = batchnorm_kernels();
    if (use_batch_stats) {
      k.forward_train(yp, smp, sip, rmp, rvp, xp, gp, bp, n, c, e, momentum, relu);
    } else {
      k.forward_eval(yp, smp, sip, xp, mean, var, gp, bp, n, c, e, relu);
    }
  }
  return y;
}

py::object batchnorm_backward(py::handle dy_obj, py::handle x_obj, py::handle g_obj,
                              py::handle sm_obj, py::handle si_obj, py::handle dg_obj,
                              py::handle db_obj, bool batch_stats, bool accumulate,
                              py::handle accumulate_bias, bool compute_grad_input,
                              py::handle dx_obj, const std::string& activation,
                              py::handle y_obj, py::handle beta_obj) {
  const char* fn = "batchnorm_backward";
  const bool relu = parse_act(fn, activation) == Activation::relu;
  const bool acc_b = accumulate_bias.is_none() ? accumulate : accumulate_bias.cast<bool>();
  py::array sm = f32_array(fn, "save_mean", sm_obj, 1);
  const int64_t c = sm.shape(0);
  py::array si = f32_array(fn, "save_invstd", si_obj, 1);
  require_shape(fn, "save_invstd", si, {c});
  py::array x = f32_array(fn, "input", x_obj, 2);
  require_shape(fn, "input", x, {-1, c});
  const int64_t n = x.shape(0);
  py::array dy = f32_array(fn, "grad_output", dy_obj, -1);
  if (dy.ndim() != 2 || dy.shape(0) != n || dy.shape(1) != c) {
    value_error(fn, "grad_output must have the output's shape (batch=" + to_string(n) +
                        ", num_features=" + to_string(c) + "), got " + shape_str(dy));
  }
  py::array g, beta, dg, db;
  const float* gp = opt_channel(fn, "weight", g_obj, c, &g);
  const float* betap = opt_channel(fn, "bias", beta_obj, c, &beta);
  float* dgp = nullptr;
  float* dbp = nullptr;
  if (!dg_obj.is_none()) { dg = inplace_array(fn, "grad_weight", dg_obj, {c}); dgp = f32_ptr(dg); }
  if (!db_obj.is_none()) { db = inplace_array(fn, "grad_bias", db_obj, {c}); dbp = f32_ptr(db); }
  // With activation='relu', dy is masked as relu's backward: by the fused forward's output
  // (y > 0) when given, else by the pre-activation recomputed from input, the saved
  // statistics, weight and bias (bitwise the forward's), so the output need not be kept.
  py::array y;
  const float* yp = nullptr;
  if (relu && !y_obj.is_none()) {
    y = f32_array(fn, "output", y_obj, -1);
    if (y.ndim() != 2 || y.shape(0) != n || y.shape(1) != c) {
      value_error(fn, "output must have the input's shape (batch=" + to_string(n) +
                          ", num_features=" + to_string(c) + "), got " + shape_str(y));
    }
    yp = f32_cptr(y);
  } else if (!relu && !y_obj.is_none()) {
    value_error(fn, "output is only used with activation='relu'");
  }
  py::object dx_ret = py::none();
  float* dxp = nullptr;
  if (compute_grad_input) {
    py::array dx = out_array(fn, "grad_input", dx_obj, {n, c});
    // Each element of dx is written after its last read of dy, x and y: dx may be any of
    // them exactly (in place), never a partial overlap.
    require_disjoint(fn, "grad_input", dx, "grad_output", dy, /*allow_exact=*/true);
    require_disjoint(fn, "grad_input", dx, "input", x, /*allow_exact=*/true);
    if (yp) require_disjoint(fn, "grad_input", dx, "output", y, /*allow_exact=*/true);
    dxp = f32_ptr(dx);
    dx_ret = dx;
  }
  const float* dyp = f32_cptr(dy);
  const float* xp = f32_cptr(x);
  const float* smp = f32_cptr(sm);
  const float* sip = f32_cptr(si);
  {
    py::gil_scoped_release release;
    batchnorm_kernels().backward(dxp, dgp, dbp, dyp, xp, yp, smp, sip, gp, betap, n, c,
                                 batch_stats, accumulate ? 1.0f : 0.0f, acc_b ? 1.0f : 0.0f,
                                 relu);
  }
  return dx_ret;
}

}  // namespace

void register_layers_pointwise(py::module_& m);  // bind_layers_pointwise.cpp

py::dict scratch_dict(const GemmScratch& s) {
  py::dict d;
  d["b_shared"] = s.b_shared_bytes;
  d["a"] = s.a_bytes;
  d["b_own"] = s.b_own_bytes;
  d["total"] = s.total_bytes();
  return d;
}

py::dict linear_scratch_bytes(int64_t batch, int64_t in, int64_t out, bool input_grad,
                              py::handle threads_obj) {
  const char* fn = "linear_scratch";
  if (batch < 0 || in < 0 || out < 0) {
    value_error(fn, "batch, in_features, out_features must be >= 0, got (" + to_string(batch) +
                        ", " + to_string(in) + ", " + to_string(out) + ")");
  }
  const int64_t threads =
      threads_obj.is_none() ? sg::num_threads() : threads_obj.cast<int64_t>();
  if (threads < 1) value_error(fn, "threads must be >= 1, got " + to_string(threads));
  return scratch_dict(linear_scratch(batch, in, out, input_grad, threads));
}

void register_layers(py::module_& m) {
  m.def("linear_forward", &linear_forward, py::arg("input"), py::arg("weight"),
        py::arg("bias") = py::none(), py::kw_only(), py::arg("out") = py::none(),
        py::arg("activation") = "none",
        "act(input @ weight.T + bias) in one GEMM with the bias (and optional 'relu') fused. "
        "input (batch, in), weight (out, in), bias (out,) or None; returns (batch, out).");
  m.def("linear_backward", &linear_backward, py::arg("grad_output"), py::arg("input"),
        py::arg("weight"), py::arg("grad_weight"), py::arg("grad_bias") = py::none(), py::kw_only(),
        py::arg("accumulate") = false, py::arg("accumulate_bias") = py::none(),
        py::arg("compute_grad_input") = true,
        py::arg("grad_input") = py::none(),
        "Linear backward in one call: grad_weight (+)= grad_output.T @ input, grad_bias (+)= "
        "column sums of grad_output (deterministic), and returns grad_input = grad_output @ weight "
        "(None when compute_grad_input=False). accumulate=False writes without reading.");
  m.def("linear_scratch", &linear_scratch_bytes, py::arg("batch"), py::arg("in_features"),
        py::arg("out_features"), py::kw_only(), py::arg("input_grad") = true,
        py::arg("threads") = py::none(),
        "Bytes of GEMM scratch (packing buffers, reused across calls and only growing) that a "
        "Linear forward + backward at this shape grows on `threads` (default: the current "
        "count): a dict of 'b_shared' (calling thread), 'a' and 'b_own' (a list per team "
        "member) and 'total'. input_grad: the backward computes dL/dx.");
  m.def("batchnorm_forward", &batchnorm_forward, py::arg("input"), py::arg("weight"),
        py::arg("bias"), py::arg("running_mean"), py::arg("running_var"),
        py::arg("num_batches_tracked"), py::arg("save_mean"), py::arg("save_invstd"), py::kw_only(),
        py::arg("use_batch_stats"), py::arg("momentum") = 0.1, py::arg("eps") = 1e-5,
        py::arg("out") = py::none(), py::arg("activation") = "none",
        "BatchNorm1d forward on (batch, C) as torch: batch statistics (biased var) when "
        "use_batch_stats, updating running_mean/var when given (unbiased var; momentum None = "
        "cumulative average over num_batches_tracked, factor 0 without it) and incrementing "
        "num_batches_tracked when given; else the running statistics, which are then required. "
        "Fills save_mean/save_invstd for the backward. activation='relu' stores "
        "relu(batchnorm(input)) in the same pass.");
  m.def("batchnorm_backward", &batchnorm_backward, py::arg("grad_output"), py::arg("input"),
        py::arg("weight"), py::arg("save_mean"), py::arg("save_invstd"), py::arg("grad_weight"),
        py::arg("grad_bias"), py::kw_only(), py::arg("batch_stats"), py::arg("accumulate") = false,
        py::arg("accumulate_bias") = py::none(), py::arg("compute_grad_input") = true, py::arg("grad_input") = py::none(),
        py::arg("activation") = "none", py::arg("output") = py::none(), py::arg("bias") = py::none(),
        "BatchNorm1d backward from the saved statistics: grad_weight/grad_bias written or "
        "accumulated, returns grad_input. Deterministic reductions. activation='relu' first "
        "masks grad_output as relu's backward, by `output` (the fused forward's output) when "
        "given, else by the pre-activation recomputed from input, the saved statistics, "
        "weight and `bias` (BatchNorm's beta). grad_input may be grad_output or input itself.");
  register_layers_pointwise(m);
}

}  // namespace sg::bind
