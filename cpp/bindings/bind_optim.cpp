// Bindings for the fused optimizer steps, the segmented gradient-norm pass and gradient
// clipping over the flat buffers. Every array is checked (dtype, rank, length, writeability,
// aliasing) and every segment bounds-checked before the GIL is released; nothing converts.
#include <cmath>
#include <string>
#include <vector>

#include "bindings/checks.h"
#include "optim/optim.h"

namespace sg::bind {
namespace {

// A flat float32 1-D buffer of length n (n < 0: any), optionally updated in place.
py::array flat(const char* fn, const char* name, py::handle obj, int64_t n, bool writeable) {
  py::array a = f32_array(fn, name, obj, 1);
  if (n >= 0 && a.shape(0) != n) {
    value_error(fn, std::string(name) + " must have the flat length of param (" +
                        std::to_string(n) + ",), got " + shape_str(a));
  }
  if (writeable) require_writeable(fn, name, a);
  return a;
}

// Optional flat buffer: None -> null pointer, else as flat().
float* opt_flat(const char* fn, const char* name, py::handle obj, int64_t n, bool required,
                const char* why, std::vector<py::array>& keep) {
  if (obj.is_none()) {
    if (required) value_error(fn, std::string(name) + " is required " + why + ", got None");
    return nullptr;
  }
  keep.push_back(flat(fn, name, obj, n, true));
  return f32_ptr(keep.back());
}

struct SegArrays {
  py::array off, len;
  Segments s;
};

// seg_offsets/seg_lengths: int64 1-D of equal length, each segment inside [0, n). For in-place
// updates (`disjoint`) segments must also be sorted and non-overlapping, else an element would
// be updated twice.
SegArrays segments(const char* fn, py::handle off_obj, py::handle len_obj, int64_t n,
                   bool disjoint) {
  SegArrays r;
  r.off = int_array(fn, "seg_offsets", off_obj, 1);
  r.len = int_array(fn, "seg_lengths", len_obj, 1);
  if (r.off.itemsize() != 8) type_error(fn, "seg_offsets must have dtype int64, got " + dtype_str(r.off));
  if (r.len.itemsize() != 8) type_error(fn, "seg_lengths must have dtype int64, got " + dtype_str(r.len));
  if (r.off.shape(0) != r.len.shape(0)) {
    value_error(fn, "seg_offsets and seg_lengths must have the same length, got " +
                        shape_str(r.off) + " and " + shape_str(r.len));
  }
  const auto* o = static_cast<const int64_t*>(r.off.data());
  const auto* l = static_cast<const int64_t*>(r.len.data());
  const int64_t k = r.off.shape(0);
  int64_t prev_end = 0;
  for (int64_t i = 0; i < k; ++i) {
    if (o[i] < 0 || l[i] < 0 || o[i] > n - l[i]) {
      value_error(fn, "segment " + std::to_string(i) + " (offset " + std::to_string(o[i]) +
                          ", length " + std::to_string(l[i]) + ") is outside the flat buffer of " +
                          std::to_string(n) + " elements");
    }
    if (disjoint && o[i] < prev_end) {
      value_error(fn, "segments must be sorted by offset and must not overlap, but segment " +
                          std::to_string(i) + " starts at " + std::to_string(o[i]) +
                          " before the previous one ends at " + std::to_string(prev_end));
    }
    prev_end = o[i] + l[i];
  }
  r.s = Segments{o, l, k};
  return r;
}

void all_disjoint(const char* fn, std::initializer_list<std::pair<const char*, py::handle>> arrs) {
  std::vector<std::pair<const char*, py::array>> v;
  for (auto& [name, h] : arrs) {
    if (!h.is_none()) v.emplace_back(name, py::reinterpret_borrow<py::array>(h));
  }
  for (size_t i = 0; i < v.size(); ++i) {
    for (size_t j = i + 1; j < v.size(); ++j) {
      require_disjoint(fn, v[i].first, v[i].second, v[j].first, v[j].second);
    }
  }
}

void require(const char* fn, bool ok, const std::string& msg) {
  if (!ok) value_error(fn, msg);
}

std::string num(double x) {
  std::string s = std::to_string(x);
  return s;
}

GradPreHyper pre_hyper(const char* fn, double grad_scale, py::object clip_value, bool maximize) {
  GradPreHyper h;
  h.grad_scale = grad_scale;  // NaN/inf allowed: that is PyTorch's unguarded clip of a bad norm
  h.maximize = maximize;
  if (!clip_value.is_none()) {
    const double c = clip_value.cast<double>();
    require(fn, c >= 0.0, "clip_value must be >= 0 or None, got " + num(c));
    h.clip_value = c;
  }
  return h;
}

py::tuple grad_norms_py(py::handle grad_obj, py::handle off_obj, py::handle len_obj,
                        double norm_type, py::handle out_obj) {
  const char* fn = "grad_norms";
  py::array g = flat(fn, "grad", grad_obj, -1, false);
  SegArrays seg = segments(fn, off_obj, len_obj, g.shape(0), false);
  const bool inf = std::isinf(norm_type) && norm_type > 0;
  require(fn, inf || norm_type == 2.0,
          "norm_type must be 2.0 or inf for the fused kernel, got " + num(norm_type));
  py::array out;
  if (out_obj.is_none()) {
    out = py::array_t<double>(seg.s.count);
  } else {
    if (!py::isinstance<py::array_t<double, 0>>(out_obj) ||
        py::reinterpret_borrow<py::array>(out_obj).dtype().kind() != 'f' ||
        py::reinterpret_borrow<py::array>(out_obj).itemsize() != 8) {
      type_error(fn, "out must be a float64 numpy.ndarray or None");
    }
    out = py::reinterpret_borrow<py::array>(out_obj);
    require(fn, out.ndim() == 1 && out.shape(0) == seg.s.count && (out.flags() & py::array::c_style),
            "out must be a C-contiguous float64 array of shape (" + std::to_string(seg.s.count) +
                ",), got " + shape_str(out));
    require_writeable(fn, "out", out);
    require_aligned(fn, "out", out);
  }
  const float* gp = f32_cptr(g);
  double* op = static_cast<double*>(out.mutable_data());
  double total;
  {
    py::gil_scoped_release release;
    total = grad_norms(gp, seg.s, inf, op);
  }
  return py::make_tuple(total, out);
}

void scale_clamp_py(py::handle grad_obj, py::handle off_obj, py::handle len_obj, double scale,
                    py::object clip_value) {
  const char* fn = "grad_scale_clamp";
  py::array g = flat(fn, "grad", grad_obj, -1, true);
  SegArrays seg = segments(fn, off_obj, len_obj, g.shape(0), true);
  GradPreHyper h = pre_hyper(fn, scale, clip_value, false);
  float* gp = f32_ptr(g);
  py::gil_scoped_release release;
  scale_clamp_step(gp, seg.s, h);
}

void adam_py(py::handle p_obj, py::handle g_obj, py::handle m_obj, py::handle v_obj,
             py::handle vmax_obj, py::handle off_obj, py::handle len_obj, double lr, double beta1,
             double beta2, double eps, double weight_decay, int64_t step, bool amsgrad,
             bool decoupled, bool maximize, double grad_scale, py::object clip_value) {
  const char* fn = "adam_step";
  py::array p = flat(fn, "param", p_obj, -1, true);
  const int64_t n = p.shape(0);
  py::array g = flat(fn, "grad", g_obj, n, false);
  py::array m = flat(fn, "exp_avg", m_obj, n, true);
  py::array v = flat(fn, "exp_avg_sq", v_obj, n, true);
  std::vector<py::array> keep;
  float* vmax = opt_flat(fn, "max_exp_avg_sq", vmax_obj, n, amsgrad, "when amsgrad=True", keep);
  all_disjoint(fn, {{"param", p_obj}, {"grad", g_obj}, {"exp_avg", m_obj}, {"exp_avg_sq", v_obj},
                    {"max_exp_avg_sq", vmax_obj}});
  SegArrays seg = segments(fn, off_obj, len_obj, n, true);
  require(fn, lr >= 0.0, "lr must be >= 0, got " + num(lr));
  require(fn, beta1 >= 0.0 && beta1 < 1.0, "beta1 must be in [0, 1), got " + num(beta1));
  require(fn, beta2 >= 0.0 && beta2 < 1.0, "beta2 must be in [0, 1), got " + num(beta2));
  require(fn, eps >= 0.0, "eps must be >= 0, got " + num(eps));
  require(fn, weight_decay >= 0.0, "weight_decay must be >= 0, got " + num(weight_decay));
  require(fn, step >= 1, "step must be >= 1 (the step being taken), got " + std::to_string(step));
  AdamHyper h{pre_hyper(fn, grad_scale, clip_value, maximize), lr, beta1, beta2, eps,
              weight_decay, step, amsgrad, decoupled};
  float *pp = f32_ptr(p), *mp = f32_ptr(m), *vp = f32_ptr(v);
  const float* gp = f32_cptr(g);
  py::gil_scoped_release release;
  adam_step(pp, mp, vp, amsgrad ? vmax : nullptr, gp, seg.s, h);
}

void rmsprop_py(py::handle p_obj, py::handle g_obj, py::handle sq_obj, py::handle ga_obj,
                py::handle buf_obj, py::handle off_obj, py::handle len_obj, double lr,
                double alpha, double eps, double weight_decay, double momentum, bool centered,
                bool maximize, double grad_scale, py::object clip_value) {
  const char* fn = "rmsprop_step";
  py::array p = flat(fn, "param", p_obj, -1, true);
  const int64_t n = p.shape(0);
  py::array g = flat(fn, "grad", g_obj, n, false);
  py::array sq = flat(fn, "square_avg", sq_obj, n, true);
  std::vector<py::array> keep;
  float* ga = opt_flat(fn, "grad_avg", ga_obj, n, centered, "when centered=True", keep);
  float* buf = opt_flat(fn, "momentum_buffer", buf_obj, n, momentum > 0.0, "when momentum > 0", keep);
  all_disjoint(fn, {{"param", p_obj}, {"grad", g_obj}, {"square_avg", sq_obj},
                    {"grad_avg", ga_obj}, {"momentum_buffer", buf_obj}});
  SegArrays seg = segments(fn, off_obj, len_obj, n, true);
  require(fn, lr >= 0.0, "lr must be >= 0, got " + num(lr));
  require(fn, alpha >= 0.0, "alpha must be >= 0, got " + num(alpha));
  require(fn, eps >= 0.0, "eps must be >= 0, got " + num(eps));
  require(fn, weight_decay >= 0.0, "weight_decay must be >= 0, got " + num(weight_decay));
  require(fn, momentum >= 0.0, "momentum must be >= 0, got " + num(momentum));
  RmspropHyper h{pre_hyper(fn, grad_scale, clip_value, maximize), lr, alpha, eps, weight_decay,
                 momentum, centered};
  float *pp = f32_ptr(p), *sqp = f32_ptr(sq);
  const float* gp = f32_cptr(g);
  py::gil_scoped_release release;
  rmsprop_step(pp, sqp, centered ? ga : nullptr, momentum > 0.0 ? buf : nullptr, gp, seg.s, h);
}

void sgd_py(py::handle p_obj, py::handle g_obj, py::handle buf_obj, py::handle off_obj,
            py::handle len_obj, double lr, double momentum, double dampening, double weight_decay,
            bool nesterov, bool first, bool maximize, double grad_scale, py::object clip_value) {
  const char* fn = "sgd_step";
  py::array p = flat(fn, "param", p_obj, -1, true);
  const int64_t n = p.shape(0);
  py::array g = flat(fn, "grad", g_obj, n, false);
  std::vector<py::array> keep;
  float* buf = opt_flat(fn, "momentum_buffer", buf_obj, n, momentum != 0.0, "when momentum != 0", keep);
  all_disjoint(fn, {{"param", p_obj}, {"grad", g_obj}, {"momentum_buffer", buf_obj}});
  SegArrays seg = segments(fn, off_obj, len_obj, n, true);
  require(fn, lr >= 0.0, "lr must be >= 0, got " + num(lr));
  require(fn, momentum >= 0.0, "momentum must be >= 0, got " + num(momentum));
  require(fn, weight_decay >= 0.0, "weight_decay must be >= 0, got " + num(weight_decay));
  require(fn, !nesterov || (momentum > 0.0 && dampening == 0.0),
          "nesterov requires momentum > 0 and dampening == 0");
  SgdHyper h{pre_hyper(fn, grad_scale, clip_value, maximize), lr, momentum, dampening,
             weight_decay, nesterov, first};
  float* pp = f32_ptr(p);
  const float* gp = f32_cptr(g);
  py::gil_scoped_release release;
  sgd_step(pp, momentum != 0.0 ? buf : nullptr, gp, seg.s, h);
}

}  // namespace

void register_optim(py::module_& m) {
  using py::arg;
  m.def("grad_norms", &grad_norms_py, arg("grad"), arg("seg_offsets"), arg("seg_lengths"),
        arg("norm_type") = 2.0, arg("out") = py::none(),
        "Read-only norm pass over segments of the flat gradient: returns (total_norm, per_segment "
        "norms as float64). norm_type 2.0 or inf. Bitwise identical for any thread count/ISA; a "
        "non-finite gradient gives a non-finite segment norm.");
  m.def("grad_scale_clamp", &scale_clamp_py, arg("grad"), arg("seg_offsets"), arg("seg_lengths"),
        arg("scale") = 1.0, arg("clip_value") = py::none(),
        "In place over the segments: grad = clamp(grad * scale, -clip_value, clip_value).");
  m.def("adam_step", &adam_py, arg("param"), arg("grad"), arg("exp_avg"), arg("exp_avg_sq"),
        arg("max_exp_avg_sq"), arg("seg_offsets"), arg("seg_lengths"), arg("lr"),
        arg("beta1"), arg("beta2"), arg("eps"), arg("weight_decay"), arg("step"),
        arg("amsgrad") = false, arg("decoupled") = false, arg("maximize") = false,
        arg("grad_scale") = 1.0, arg("clip_value") = py::none(),
        "One fused Adam/AdamW step over the segments of the flat buffers (PyTorch semantics); "
        "the gradient is read as clamp(grad * grad_scale) and never written.");
  m.def("rmsprop_step", &rmsprop_py, arg("param"), arg("grad"), arg("square_avg"),
        arg("grad_avg"), arg("momentum_buffer"), arg("seg_offsets"), arg("seg_lengths"),
        arg("lr"), arg("alpha"), arg("eps"), arg("weight_decay"), arg("momentum"),
        arg("centered") = false, arg("maximize") = false, arg("grad_scale") = 1.0,
        arg("clip_value") = py::none(),
        "One fused RMSprop step over the segments of the flat buffers (PyTorch semantics).");
  m.def("sgd_step", &sgd_py, arg("param"), arg("grad"), arg("momentum_buffer"),
        arg("seg_offsets"), arg("seg_lengths"), arg("lr"), arg("momentum"),
        arg("dampening"), arg("weight_decay"), arg("nesterov") = false, arg("first") = false,
        arg("maximize") = false, arg("grad_scale") = 1.0, arg("clip_value") = py::none(),
        "One fused SGD step over the segments of the flat buffers (PyTorch semantics); first=True "
        "initialises the momentum buffer with the gradient.");
}

}  // namespace sg::bind
