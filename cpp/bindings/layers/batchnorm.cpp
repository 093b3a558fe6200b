// Bindings for cpp/layers/batchnorm.h: BatchNorm1d's forward and backward (one call per
// direction) and BatchNormContext, what a forward leaves for its backward. Every argument is
// validated before any output is touched, so a rejected call leaves parameters, gradients,
// running statistics, the context and every buffer as they were.
#include <cstdint>
#include <string>

#include "bindings/checks.h"
#include "bindings/layer_calls.h"
#include "layers/batchnorm.h"

namespace sg::bind {
namespace {

using std::to_string;

// One forward/backward pair's context, as autograd's ctx for batch_norm (+ relu): the mode the
// caller sets, the batch statistics the forward writes into the caller's buffers and the input
// it ran on. The backward reads all of it from here, so it cannot be handed a mode or
// statistics other than the ones its forward used.
struct BatchNormContext {
  py::array save_mean, save_invstd;  // (C,) float32; the forward writes them
  bool batch_stats = true;           // normalise by this batch's statistics, else the running ones
  bool relu = false;                 // a ReLU is fused into the forward's store and the backward
  py::object input = py::none();     // set by the forward
  py::object output = py::none();    // cleared by the forward; the caller may keep the output here
};

// save_mean/save_invstd: writeable, disjoint float32 (C,) arrays. Checked when a context is
// made and again at each use (an ndarray's shape and flags can be changed in place).
void check_saved(const char* fn, py::handle mean_obj, py::handle invstd_obj) {
  py::array sm = f32_array(fn, "save_mean", mean_obj, 1);
  py::array si = f32_array(fn, "save_invstd", invstd_obj, 1);
  require_same_shape(fn, "save_invstd", si, "save_mean", sm);
  require_writeable(fn, "save_mean", sm);
  require_writeable(fn, "save_invstd", si);
  require_disjoint(fn, "save_invstd", si, "save_mean", sm);
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

// The running statistics of one forward: read (normalising by them) or updated (training).
struct Running {
  py::array mean, var;
  bool given = false, update = false;
  int64_t* counter = nullptr;  // num_batches_tracked, incremented by a training forward
  float momentum = 0.0f;       // update factor
};

Running running_stats(const char* fn, py::handle rm_obj, py::handle rv_obj, py::handle nbt_obj,
                      py::handle momentum_obj, bool batch_stats, int64_t c) {
  Running r;
  r.given = !rm_obj.is_none();
  if (r.given != !rv_obj.is_none()) {
    value_error(fn, std::string("running_mean and running_var must both be given or both be "
                                "None, got ") + (r.given ? "running_var" : "running_mean") +
                        "=None and the other an array");
  }
  if (!r.given && !batch_stats) {
    value_error(fn, "running_mean and running_var are required when ctx.batch_stats=False "
                    "(normalising by running statistics), got None");
  }
  r.update = batch_stats && r.given;  // updated in training, only read otherwise
  if (r.given) {
    r.mean = f32_array(fn, "running_mean", rm_obj, 1);
    r.var = f32_array(fn, "running_var", rv_obj, 1);
    require_shape(fn, "running_mean", r.mean, {c});
    require_shape(fn, "running_var", r.var, {c});
    if (r.update) {
      require_writeable(fn, "running_mean", r.mean);
      require_writeable(fn, "running_var", r.var);
    }
  }
  // num_batches_tracked (training only) is incremented when given, as torch's module does.
  r.counter = batch_stats && !nbt_obj.is_none() ? batch_counter(fn, nbt_obj) : nullptr;
  if (!r.update) return r;
  if (momentum_obj.is_none()) {
    // cumulative average; torch's factor is 0 without a counter
    if (r.counter && *r.counter < 0) {
      value_error(fn, "num_batches_tracked must be >= 0 for momentum=None (cumulative "
                      "average), got " + to_string(*r.counter));
    }
    r.momentum = r.counter ? static_cast<float>(1.0 / static_cast<double>(*r.counter + 1)) : 0.0f;
    return r;
  }
  double m = 0.0;
  try {
    m = momentum_obj.cast<double>();
  } catch (const py::cast_error&) {
    type_error(fn, "momentum must be a float in [0, 1] or None, got " +
                       py::str(py::type::of(momentum_obj).attr("__name__")).cast<std::string>());
  }
  if (!(m >= 0.0 && m <= 1.0)) value_error(fn, "momentum must be in [0, 1] or None, got " + to_string(m));
  r.momentum = static_cast<float>(m);
  return r;
}

py::array batchnorm_forward(py::handle x_obj, py::handle g_obj, py::handle b_obj,
                            py::handle rm_obj, py::handle rv_obj, py::handle nbt_obj,
                            BatchNormContext& ctx, py::handle momentum_obj, double eps,
                            py::handle out_obj) {
  const char* fn = "batchnorm_forward";
  check_saved(fn, ctx.save_mean, ctx.save_invstd);
  const int64_t c = ctx.save_mean.shape(0);
  py::array x = f32_array(fn, "input", x_obj, -1);
  if (x.ndim() != 2 || x.shape(1) != c) {
    value_error(fn, "input must have shape (batch, num_features=" + to_string(c) + "), got " +
                        shape_str(x));
  }
  const int64_t n = x.shape(0);
  py::array g, b;
  const float* gp = opt_vector(fn, "weight", g_obj, c, &g);
  const float* bp = opt_vector(fn, "bias", b_obj, c, &b);
  const bool batch_stats = ctx.batch_stats, relu = ctx.relu;
  Running r = running_stats(fn, rm_obj, rv_obj, nbt_obj, momentum_obj, batch_stats, c);
  if (!(eps >= 0.0)) value_error(fn, "eps must be >= 0, got " + to_string(eps));
  if (batch_stats && n <= 1) {
    value_error(fn, "Expected more than 1 value per channel when training, got input of shape " +
                        shape_str(x));
  }
  py::array y = out_array(fn, "out", out_obj, {n, c});
  require_disjoint(fn, "out", y, "input", x);
  const float* xp = f32_cptr(x);
  float* yp = f32_ptr(y);
  float* smp = f32_ptr(ctx.save_mean);
  float* sip = f32_ptr(ctx.save_invstd);
  float* rmp = r.update ? f32_ptr(r.mean) : nullptr;
  float* rvp = r.update ? f32_ptr(r.var) : nullptr;
  const float* mean = r.given ? f32_cptr(r.mean) : nullptr;  // non-null when !batch_stats
  const float* var = r.given ? f32_cptr(r.var) : nullptr;
  const float e = static_cast<float>(eps);
  if (r.counter) *r.counter += 1;
  ctx.input = x;
  ctx.output = py::none();
  {
    py::gil_scoped_release release;
    const BatchNormKernels& k = batchnorm_kernels();
    if (batch_stats) {
      k.forward_train(yp, smp, sip, rmp, rvp, xp, gp, bp, n, c, e, r.momentum, relu);
    } else {
      k.forward_eval(yp, smp, sip, xp, mean, var, gp, bp, n, c, e, relu);
    }
  }
  return y;
}

py::object batchnorm_backward(py::handle dy_obj, py::handle g_obj, py::handle beta_obj,
                              const BatchNormContext& ctx, py::handle dg_obj, py::handle db_obj,
                              bool accumulate, py::handle accumulate_bias,
                              bool compute_grad_input, py::handle dx_obj,
                              py::handle sums_obj, py::handle count_obj) {
  const char* fn = "batchnorm_backward";
  const bool acc_b = accumulate_bias.is_none() ? accumulate : accumulate_bias.cast<bool>();
  check_saved(fn, ctx.save_mean, ctx.save_invstd);
  if (ctx.input.is_none()) value_error(fn, "ctx has no input: run batchnorm_forward with it first");
  const int64_t c = ctx.save_mean.shape(0);
  py::array x = f32_array(fn, "ctx.input", ctx.input, 2);
  require_shape(fn, "ctx.input", x, {-1, c});
  const int64_t n = x.shape(0);
  py::array dy =
      batch_matrix(fn, "grad_output", dy_obj, "the output's shape", n, "num_features", c);
  py::array g, beta, dg, db;
  const float* gp = opt_vector(fn, "weight", g_obj, c, &g);
  const float* betap = opt_vector(fn, "bias", beta_obj, c, &beta);
  float* dgp = nullptr;
  float* dbp = nullptr;
  if (!dg_obj.is_none()) { dg = inplace_array(fn, "grad_weight", dg_obj, {c}); dgp = f32_ptr(dg); }
  if (!db_obj.is_none()) { db = inplace_array(fn, "grad_bias", db_obj, {c}); dbp = f32_ptr(db); }
  // With a fused ReLU, dy is masked as relu's backward: by the forward's output (y > 0) when
  // the caller kept it in ctx.output, else by the pre-activation recomputed from the input,
  // the saved statistics, weight and bias (bitwise the forward's), so it need not be kept.
  py::array y;
  const float* yp = nullptr;
  if (!ctx.output.is_none()) {
    if (!ctx.relu) value_error(fn, "ctx.output is only used with activation='relu'");
    y = batch_matrix(fn, "ctx.output", ctx.output, "the input's shape", n, "num_features", c);
    yp = f32_cptr(y);
  }
  // batch_sums: the whole batch's (2, C) sums of dy and dy * xhat (SyncBatchNorm: every rank's,
  // summed), with batch_count its rows; they replace this call's own reduction.
  py::array sums;
  const float* sumsp = nullptr;
  int64_t count = n;
  if (sums_obj.is_none() != count_obj.is_none()) {
    value_error(fn, "batch_sums and batch_count go together, got " +
                        std::string(sums_obj.is_none() ? "batch_count" : "batch_sums") +
                        " without the other");
  }
  if (!sums_obj.is_none()) {
    sums = f32_array(fn, "batch_sums", sums_obj, 2);
    require_shape(fn, "batch_sums", sums, {2, c});
    count = count_obj.cast<int64_t>();
    if (count < n) {
      value_error(fn, "batch_count must be at least the input's " + to_string(n) +
                          " rows (the whole batch they are part of), got " + to_string(count));
    }
    sumsp = f32_cptr(sums);
  }
  py::object dx_ret = py::none();
  float* dxp = nullptr;
  if (compute_grad_input) {
    py::array dx = out_array(fn, "grad_input", dx_obj, {n, c});
    // Each element of dx is written after its last read of dy, x and y: dx may be any of
    // them exactly (in place), never a partial overlap.
    require_disjoint_from(fn, "grad_input", dx,
                          {{"grad_output", &dy}, {"ctx.input", &x}, {"ctx.output", yp ? &y : nullptr}},
                          /*allow_exact=*/true);
    dxp = f32_ptr(dx);
    dx_ret = dx;
  }
  const float* dyp = f32_cptr(dy);
  const float* xp = f32_cptr(x);
  const float* smp = f32_cptr(ctx.save_mean);
  const float* sip = f32_cptr(ctx.save_invstd);
  // Given sums are batch statistics' by definition (SyncBatchNorm's forward normalises by
  // statistics it computed across ranks and passes them as given ones).
  const bool batch_stats = ctx.batch_stats || sumsp, relu = ctx.relu;
  {
    py::gil_scoped_release release;
    batchnorm_kernels().backward(dxp, dgp, dbp, dyp, xp, yp, smp, sip, gp, betap, n, c,
                                 batch_stats, accumulate ? 1.0f : 0.0f, acc_b ? 1.0f : 0.0f,
                                 relu, sumsp, count);
  }
  return dx_ret;
}

constexpr const char* kContextDoc =
    "What one batchnorm_forward leaves for its batchnorm_backward: the mode (batch_stats, "
    "activation) set by the caller, the batch statistics written into save_mean/save_invstd "
    "and the input, both recorded by the forward. output: None after each forward; keep the "
    "fused forward's output here to have the backward mask by it.";

void bind_context(py::module_& m) {
  using py::arg;
  py::class_<BatchNormContext>(m, "BatchNormContext", kContextDoc)
      .def(py::init([](py::handle save_mean, py::handle save_invstd, bool batch_stats,
                       const std::string& activation) {
             const char* fn = "BatchNormContext";
             check_saved(fn, save_mean, save_invstd);
             BatchNormContext ctx;
             ctx.save_mean = py::reinterpret_borrow<py::array>(save_mean);
             ctx.save_invstd = py::reinterpret_borrow<py::array>(save_invstd);
             ctx.batch_stats = batch_stats;
             ctx.relu = relu_epilogue(fn, activation);
             return ctx;
           }),
           // Not keyword-only: a layer makes one per forward, and pybind11's keyword parsing
           // costs more than the rest of the constructor (a bool and a str cannot be swapped).
           arg("save_mean"), arg("save_invstd"), arg("batch_stats"), arg("activation") = "none")
      .def_property_readonly("save_mean", [](const BatchNormContext& c) { return c.save_mean; })
      .def_property_readonly("save_invstd",
                             [](const BatchNormContext& c) { return c.save_invstd; })
      .def_readwrite("batch_stats", &BatchNormContext::batch_stats,
                     "Normalise by the batch's statistics (training), else by the running ones.")
      .def_property(
          "activation",
          [](const BatchNormContext& c) { return std::string(c.relu ? "relu" : "none"); },
          [](BatchNormContext& c, const std::string& a) {
            c.relu = relu_epilogue("BatchNormContext", a);
          },
          "'relu': a ReLU is fused into the forward's store and the backward; else 'none'.")
      .def_property_readonly("input", [](const BatchNormContext& c) { return c.input; })
      .def_readwrite("output", &BatchNormContext::output);
}

}  // namespace

void register_batchnorm(py::module_& m) {
  using py::arg;
  bind_context(m);
  m.def("batchnorm_forward", &batchnorm_forward, arg("input"), arg("weight"), arg("bias"),
        arg("running_mean"), arg("running_var"), arg("num_batches_tracked"), arg("ctx"),
        py::kw_only(), arg("momentum") = 0.1, arg("eps") = 1e-5, arg("out") = py::none(),
        "BatchNorm1d forward on (batch, C) as torch: batch statistics (biased var) when "
        "ctx.batch_stats, updating running_mean/var when given (unbiased var; momentum None = "
        "cumulative average over num_batches_tracked, factor 0 without it) and incrementing "
        "num_batches_tracked when given; else the running statistics, which are then required. "
        "Fills ctx (save_mean/save_invstd, input) for the backward. ctx.activation='relu' "
        "stores relu(batchnorm(input)) in the same pass.");
  m.def("batchnorm_backward", &batchnorm_backward, arg("grad_output"), arg("weight"),
        arg("bias"), arg("ctx"), arg("grad_weight"), arg("grad_bias"), py::kw_only(),
        arg("accumulate") = false, arg("accumulate_bias") = py::none(),
        arg("compute_grad_input") = true, arg("grad_input") = py::none(),
        arg("batch_sums") = py::none(), arg("batch_count") = py::none(),
        "BatchNorm1d backward from its forward's ctx: grad_weight/grad_bias written or "
        "accumulated, returns grad_input. Deterministic reductions. ctx.activation='relu' "
        "first masks grad_output as relu's backward, by ctx.output when kept, else by the "
        "pre-activation recomputed from ctx.input, the saved statistics, weight and bias. "
        "grad_input may be grad_output or ctx.input itself. batch_sums (float32 (2, C): the "
        "sums of the masked grad_output and of it times xhat) and batch_count (rows) describe "
        "the whole batch these rows are part of (SyncBatchNorm across ranks): dL/dx takes the "
        "statistics' gradient from them instead of this call's rows.");
}

}  // namespace sg::bind
