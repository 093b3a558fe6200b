// Bindings for cpp/layers/layernorm.h: LayerNorm's forward and backward on (rows, features),
// one call per direction. The forward writes each row's mean and rstd into the caller's
// save_mean/save_rstd, which the backward reads. Every argument is validated before any
// output is touched, so a rejected call leaves parameters, gradients and buffers as they were.
#include <cstdint>
#include <string>
#include <utility>

#include "bindings/checks.h"
#include "layers/layernorm.h"

namespace sg::bind {
namespace {

using std::to_string;

// input: a float32 (rows, features) matrix with features >= 1.
py::array rows_input(const char* fn, const char* name, py::handle obj) {
  py::array x = f32_array(fn, name, obj, -1);
  if (x.ndim() != 2 || x.shape(1) < 1) {
    value_error(fn, std::string(name) + " must have shape (rows, features) with features >= 1, got " +
                        shape_str(x));
  }
  return x;
}

// save_mean/save_rstd: float32 (rows,) arrays, disjoint; writeable when the forward fills them.
void check_stats(const char* fn, const py::array& mean, const py::array& rstd, int64_t n,
                 bool write) {
  require_shape(fn, "save_mean", mean, {n});
  require_shape(fn, "save_rstd", rstd, {n});
  if (write) {
    require_writeable(fn, "save_mean", mean);
    require_writeable(fn, "save_rstd", rstd);
  }
  require_disjoint(fn, "save_rstd", rstd, "save_mean", mean);
}

py::array layernorm_forward(py::handle x_obj, py::handle g_obj, py::handle b_obj,
                            py::handle mean_obj, py::handle rstd_obj, double eps,
                            py::handle out_obj) {
  const char* fn = "layernorm_forward";
  py::array x = rows_input(fn, "input", x_obj);
  const int64_t n = x.shape(0), d = x.shape(1);
  py::array g, b;
  const float* gp = opt_vector(fn, "weight", g_obj, d, &g);
  const float* bp = opt_vector(fn, "bias", b_obj, d, &b);
  py::array mean = f32_array(fn, "save_mean", mean_obj, 1);
  py::array rstd = f32_array(fn, "save_rstd", rstd_obj, 1);
  check_stats(fn, mean, rstd, n, true);
  if (!(eps >= 0.0)) value_error(fn, "eps must be >= 0, got " + to_string(eps));
  py::array y = out_array(fn, "out", out_obj, {n, d});
  require_disjoint_from(fn, "out", y,
                        {{"input", &x}, {"weight", gp ? &g : nullptr}, {"bias", bp ? &b : nullptr},
                         {"save_mean", &mean}, {"save_rstd", &rstd}});
  for (auto [name, a] : {std::pair<const char*, py::array*>{"save_mean", &mean}, {"save_rstd", &rstd}}) {
    require_disjoint_from(fn, name, *a,
                          {{"input", &x}, {"weight", gp ? &g : nullptr}, {"bias", bp ? &b : nullptr}});
  }
  const float* xp = f32_cptr(x);
  float* yp = f32_ptr(y);
  float* mp = f32_ptr(mean);
  float* rp = f32_ptr(rstd);
  const float e = static_cast<float>(eps);
  {
    py::gil_scoped_release release;
    layernorm_kernels().forward(yp, mp, rp, xp, gp, bp, n, d, e);
  }
  return y;
}

py::object layernorm_backward(py::handle dy_obj, py::handle x_obj, py::handle g_obj,
                              py::handle mean_obj, py::handle rstd_obj, py::handle dg_obj,
                              py::handle db_obj, bool accumulate, py::handle accumulate_bias,
                              bool compute_grad_input, py::handle dx_obj) {
  const char* fn = "layernorm_backward";
  const bool acc_b = accumulate_bias.is_none() ? accumulate : accumulate_bias.cast<bool>();
  py::array x = rows_input(fn, "input", x_obj);
  const int64_t n = x.shape(0), d = x.shape(1);
  py::array dy = batch_matrix(fn, "grad_output", dy_obj, "the input's shape", n, "features", d);
  py::array g, dg, db;
  const float* gp = opt_vector(fn, "weight", g_obj, d, &g);
  py::array mean = f32_array(fn, "save_mean", mean_obj, 1);
  py::array rstd = f32_array(fn, "save_rstd", rstd_obj, 1);
  check_stats(fn, mean, rstd, n, false);
  float* dgp = nullptr;
  float* dbp = nullptr;
  if (!dg_obj.is_none()) { dg = inplace_array(fn, "grad_weight", dg_obj, {d}); dgp = f32_ptr(dg); }
  if (!db_obj.is_none()) { db = inplace_array(fn, "grad_bias", db_obj, {d}); dbp = f32_ptr(db); }
  // the parameter gradients are written while every input is still read
  for (auto [name, a] : {std::pair<const char*, py::array*>{"grad_weight", dgp ? &dg : nullptr},
                         {"grad_bias", dbp ? &db : nullptr}}) {
    if (!a) continue;
    require_disjoint_from(fn, name, *a,
                          {{"grad_output", &dy}, {"input", &x}, {"weight", gp ? &g : nullptr},
                           {"save_mean", &mean}, {"save_rstd", &rstd}});
  }
  if (dgp && dbp) require_disjoint(fn, "grad_bias", db, "grad_weight", dg);
  const float* dyp = f32_cptr(dy);
  const float* xp = f32_cptr(x);
  const float* mp = f32_cptr(mean);
  const float* rp = f32_cptr(rstd);
  py::object dx_ret = py::none();
  float* dxp = nullptr;
  if (compute_grad_input) {
    py::array dx = out_array(fn, "grad_input", dx_obj, {n, d});
    // Each row of dx is stored after its row of dy and x was read (and after the parameter
    // gradients' column sums): dx may be grad_output or input exactly, never a partial overlap.
    require_disjoint_from(fn, "grad_input", dx, {{"grad_output", &dy}, {"input", &x}},
                          /*allow_exact=*/true);
    require_disjoint_from(fn, "grad_input", dx,
                          {{"weight", gp ? &g : nullptr}, {"save_mean", &mean},
                           {"save_rstd", &rstd}, {"grad_weight", dgp ? &dg : nullptr},
                           {"grad_bias", dbp ? &db : nullptr}});
    dxp = f32_ptr(dx);
    dx_ret = dx;
  }
  {
    py::gil_scoped_release release;
    layernorm_kernels().backward(dxp, dgp, dbp, dyp, xp, mp, rp, gp, n, d,
                                 accumulate ? 1.0f : 0.0f, acc_b ? 1.0f : 0.0f);
  }
  return dx_ret;
}

}  // namespace

void register_layernorm(py::module_& m) {
  using py::arg;
  m.def("layernorm_forward", &layernorm_forward, arg("input"), arg("weight"), arg("bias"),
        arg("save_mean"), arg("save_rstd"), py::kw_only(), arg("eps") = 1e-5,
        arg("out") = py::none(),
        "LayerNorm forward on (rows, features) as torch: each row normalised by its mean and "
        "biased variance, then * weight + bias (either None: 1, 0). Writes each row's mean and "
        "rstd = 1/sqrt(var + eps) into save_mean/save_rstd (rows,) for the backward.");
  m.def("layernorm_backward", &layernorm_backward, arg("grad_output"), arg("input"),
        arg("weight"), arg("save_mean"), arg("save_rstd"), arg("grad_weight"), arg("grad_bias"),
        py::kw_only(), arg("accumulate") = false, arg("accumulate_bias") = py::none(),
        arg("compute_grad_input") = true, arg("grad_input") = py::none(),
        "LayerNorm backward from the forward's input and save_mean/save_rstd: grad_weight/"
        "grad_bias (either None to skip) written or accumulated (deterministic column sums), "
        "returns grad_input. grad_input may be grad_output or input itself.");
}

}  // namespace sg::bind
