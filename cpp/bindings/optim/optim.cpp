// Bindings for cpp/optim/optim.h: the hyperparameter structs (one bound class per optimizer,
// named fields), the fused optimizer steps, the segmented gradient-norm pass and gradient
// clipping over the flat buffers. Every array is checked (dtype, rank, length, writeability,
// aliasing) and every segment bounds-checked before the GIL is released; nothing converts.
//
// Hyperparameter *values* are not checked here. steadygrad.optim._hyper.check_hyperparameters
// is their one validator: it must see the group's raw values (a str lr, a non-bool flag, a
// betas that is no pair cannot even become a field), name the group and print PyTorch's
// message with Python's repr (`Invalid epsilon value: -1e-08`), and it must run for every group
// before any kernel does, which only the Python step can order. No value a struct can hold can
// make a kernel touch memory it should not; what this file does check is what the call needs
// to be memory-safe and well-defined and Python never sees as a user value: the arrays, the
// segments, the state buffers a flag requires, and the step counter (1 - beta1^0 = 0 divides).
#include <pybind11/stl.h>

#include <cmath>
#include <optional>
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

std::string num(double x) { return py::repr(py::float_(x)).cast<std::string>(); }

py::tuple grad_norms_py(py::handle grad_obj, py::handle off_obj, py::handle len_obj,
                        double norm_type, py::handle out_obj) {
  const char* fn = "grad_norms";
  py::array g = flat(fn, "grad", grad_obj, -1, false);
  SegArrays seg = segments(fn, off_obj, len_obj, g.shape(0), false);
  const bool inf = std::isinf(norm_type) && norm_type > 0;
  if (!inf && norm_type != 2.0) {
    value_error(fn, "norm_type must be 2.0 or inf for the fused kernel, got " + num(norm_type));
  }
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
    if (!(out.ndim() == 1 && out.shape(0) == seg.s.count && (out.flags() & py::array::c_style))) {
      value_error(fn, "out must be a C-contiguous float64 array of shape (" +
                          std::to_string(seg.s.count) + ",), got " + shape_str(out));
    }
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

// Each step copies its struct before releasing the GIL: another thread may assign its fields.

void scale_clamp_py(py::handle grad_obj, py::handle off_obj, py::handle len_obj,
                    const GradPreHyper& pre) {
  const char* fn = "grad_scale_clamp";
  py::array g = flat(fn, "grad", grad_obj, -1, true);
  SegArrays seg = segments(fn, off_obj, len_obj, g.shape(0), true);
  const GradPreHyper h = pre;
  float* gp = f32_ptr(g);
  py::gil_scoped_release release;
  scale_clamp_step(gp, seg.s, h);
}

void adam_py(py::handle p_obj, py::handle g_obj, py::handle m_obj, py::handle v_obj,
             py::handle vmax_obj, py::handle off_obj, py::handle len_obj, const AdamHyper& hyper) {
  const char* fn = "adam_step";
  const AdamHyper h = hyper;
  py::array p = flat(fn, "param", p_obj, -1, true);
  const int64_t n = p.shape(0);
  py::array g = flat(fn, "grad", g_obj, n, false);
  py::array m = flat(fn, "exp_avg", m_obj, n, true);
  py::array v = flat(fn, "exp_avg_sq", v_obj, n, true);
  std::vector<py::array> keep;
  float* vmax =
      opt_flat(fn, "max_exp_avg_sq", vmax_obj, n, h.amsgrad, "when hyper.amsgrad=True", keep);
  all_disjoint(fn, {{"param", p_obj}, {"grad", g_obj}, {"exp_avg", m_obj}, {"exp_avg_sq", v_obj},
                    {"max_exp_avg_sq", vmax_obj}});
  SegArrays seg = segments(fn, off_obj, len_obj, n, true);
  if (h.step < 1) {
    value_error(fn, "hyper.step must be >= 1 (the step being taken), got " +
                        std::to_string(h.step));
  }
  float *pp = f32_ptr(p), *mp = f32_ptr(m), *vp = f32_ptr(v);
  const float* gp = f32_cptr(g);
  py::gil_scoped_release release;
  adam_step(pp, mp, vp, h.amsgrad ? vmax : nullptr, gp, seg.s, h);
}

void rmsprop_py(py::handle p_obj, py::handle g_obj, py::handle sq_obj, py::handle ga_obj,
                py::handle buf_obj, py::handle off_obj, py::handle len_obj,
                const RmspropHyper& hyper) {
  const char* fn = "rmsprop_step";
  const RmspropHyper h = hyper;
  const bool use_buf = h.momentum > 0.0;
  py::array p = flat(fn, "param", p_obj, -1, true);
  const int64_t n = p.shape(0);
  py::array g = flat(fn, "grad", g_obj, n, false);
  py::array sq = flat(fn, "square_avg", sq_obj, n, true);
  std::vector<py::array> keep;
  float* ga = opt_flat(fn, "grad_avg", ga_obj, n, h.centered, "when hyper.centered=True", keep);
  float* buf =
      opt_flat(fn, "momentum_buffer", buf_obj, n, use_buf, "when hyper.momentum > 0", keep);
  all_disjoint(fn, {{"param", p_obj}, {"grad", g_obj}, {"square_avg", sq_obj},
                    {"grad_avg", ga_obj}, {"momentum_buffer", buf_obj}});
  SegArrays seg = segments(fn, off_obj, len_obj, n, true);
  float *pp = f32_ptr(p), *sqp = f32_ptr(sq);
  const float* gp = f32_cptr(g);
  py::gil_scoped_release release;
  rmsprop_step(pp, sqp, h.centered ? ga : nullptr, use_buf ? buf : nullptr, gp, seg.s, h);
}

void sgd_py(py::handle p_obj, py::handle g_obj, py::handle buf_obj, py::handle off_obj,
            py::handle len_obj, const SgdHyper& hyper) {
  const char* fn = "sgd_step";
  const SgdHyper h = hyper;
  const bool use_buf = h.momentum != 0.0;
  py::array p = flat(fn, "param", p_obj, -1, true);
  const int64_t n = p.shape(0);
  py::array g = flat(fn, "grad", g_obj, n, false);
  std::vector<py::array> keep;
  float* buf =
      opt_flat(fn, "momentum_buffer", buf_obj, n, use_buf, "when hyper.momentum != 0", keep);
  all_disjoint(fn, {{"param", p_obj}, {"grad", g_obj}, {"momentum_buffer", buf_obj}});
  SegArrays seg = segments(fn, off_obj, len_obj, n, true);
  float* pp = f32_ptr(p);
  const float* gp = f32_cptr(g);
  py::gil_scoped_release release;
  sgd_step(pp, use_buf ? buf : nullptr, gp, seg.s, h);
}

void adagrad_py(py::handle p_obj, py::handle g_obj, py::handle sum_obj, py::handle off_obj,
                py::handle len_obj, const AdagradHyper& hyper) {
  const char* fn = "adagrad_step";
  const AdagradHyper h = hyper;
  py::array p = flat(fn, "param", p_obj, -1, true);
  const int64_t n = p.shape(0);
  py::array g = flat(fn, "grad", g_obj, n, false);
  py::array sum = flat(fn, "sum", sum_obj, n, true);
  all_disjoint(fn, {{"param", p_obj}, {"grad", g_obj}, {"sum", sum_obj}});
  SegArrays seg = segments(fn, off_obj, len_obj, n, true);
  if (h.step < 1) {
    value_error(fn, "hyper.step must be >= 1 (the step being taken), got " +
                        std::to_string(h.step));
  }
  float *pp = f32_ptr(p), *sp = f32_ptr(sum);
  const float* gp = f32_cptr(g);
  py::gil_scoped_release release;
  adagrad_step(pp, sp, gp, seg.s, h);
}

double nadam_py(py::handle p_obj, py::handle g_obj, py::handle m_obj, py::handle v_obj,
                py::handle off_obj, py::handle len_obj, const NadamHyper& hyper) {
  const char* fn = "nadam_step";
  const NadamHyper h = hyper;
  py::array p = flat(fn, "param", p_obj, -1, true);
  const int64_t n = p.shape(0);
  py::array g = flat(fn, "grad", g_obj, n, false);
  py::array m = flat(fn, "exp_avg", m_obj, n, true);
  py::array v = flat(fn, "exp_avg_sq", v_obj, n, true);
  all_disjoint(fn, {{"param", p_obj}, {"grad", g_obj}, {"exp_avg", m_obj}, {"exp_avg_sq", v_obj}});
  SegArrays seg = segments(fn, off_obj, len_obj, n, true);
  if (h.step < 1) {
    value_error(fn, "hyper.step must be >= 1 (the step being taken), got " +
                        std::to_string(h.step));
  }
  float *pp = f32_ptr(p), *mp = f32_ptr(m), *vp = f32_ptr(v);
  const float* gp = f32_cptr(g);
  py::gil_scoped_release release;
  return nadam_step(pp, mp, vp, gp, seg.s, h);
}

// clip_value crosses as None (off) or a float; C++ keeps "negative means off".
py::object clip_get(const GradPreHyper& h) {
  return h.clip_value >= 0.0 ? py::object(py::float_(h.clip_value)) : py::object(py::none());
}
void clip_set(GradPreHyper& h, const std::optional<double>& c) { h.clip_value = c ? *c : -1.0; }

// "Name(field=value, ...)" from the class's properties in definition order, so no list of
// fields is kept in step by hand.
std::string struct_repr(py::handle self) {
  py::handle type = py::type::handle_of(self);
  py::handle property = reinterpret_cast<PyObject*>(&PyProperty_Type);
  std::string s = type.attr("__name__").cast<std::string>() + "(";
  const char* sep = "";
  for (py::handle item : type.attr("__dict__").attr("items")()) {
    auto kv = py::reinterpret_borrow<py::tuple>(item);
    if (!py::isinstance(kv[1], property)) continue;
    const std::string name = kv[0].cast<std::string>();
    s += sep + name + "=" + py::repr(self.attr(name.c_str())).cast<std::string>();
    sep = ", ";
  }
  return s + ")";
}

// One field of a bound hyperparameter struct: its keyword, its member, an optional docstring.
template <class H, class T>
struct Field {
  using type = T;
  const char* name;
  T H::*member;
  const char* doc;
};
// A field whose keyword may be left out: its default.
template <class H, class T, class D>
struct DefaultedField : Field<H, T> {
  D value;
};

template <class H, class T>
Field<H, T> field(const char* name, T H::*member, const char* doc = nullptr) {
  return {name, member, doc};
}
template <class H, class T, class D>
DefaultedField<H, T, D> field(const char* name, T H::*member, D value, const char* doc) {
  return {{name, member, doc}, value};
}
template <class H>
DefaultedField<H, GradPreHyper, GradPreHyper> pre_field() {
  return field("pre", &H::pre, GradPreHyper(), "The gradient prologue (GradPreHyper).");
}

template <class H, class T>
py::arg keyword(const Field<H, T>& f) { return py::arg(f.name); }
template <class H, class T, class D>
py::arg_v keyword(const DefaultedField<H, T, D>& f) { return py::arg(f.name) = f.value; }

template <class H, class T>
void def_field(py::class_<H>& cls, const Field<H, T>& f) {
  if (f.doc) cls.def_readwrite(f.name, f.member, f.doc);
  else cls.def_readwrite(f.name, f.member);
}

// One optimizer's struct from its fields, listed once in order: a keyword-only constructor
// taking them (each set by its member, so adjacent doubles cannot depend on declaration
// order), a read-write property each and the struct_repr.
template <class H, class... F>
void bind_hyper(py::module_& m, const char* name, const char* doc, const F&... fields) {
  py::class_<H> cls(m, name, doc);
  cls.def(py::init([fields...](typename F::type... values) {
            H h{};
            ((h.*(fields.member) = values), ...);
            return h;
          }),
          py::kw_only(), keyword(fields)...);
  (def_field(cls, fields), ...);
  cls.def("__repr__", &struct_repr);
}

void bind_hyper_structs(py::module_& m) {
  using py::arg;
  py::class_<GradPreHyper>(m, "GradPreHyper",
                           "The gradient prologue every step applies first: g' = clamp(g * "
                           "grad_scale, -clip_value, clip_value), negated when maximize.")
      .def(py::init([](double grad_scale, std::optional<double> clip_value, bool maximize) {
             GradPreHyper h;
             h.grad_scale = grad_scale;
             clip_set(h, clip_value);
             h.maximize = maximize;
             return h;
           }),
           py::kw_only(), arg("grad_scale") = 1.0, arg("clip_value") = py::none(),
           arg("maximize") = false)
      .def_readwrite("grad_scale", &GradPreHyper::grad_scale,
                     "Global-norm clip coefficient (1.0: not clipping).")
      .def_property("clip_value", &clip_get, &clip_set, "Value-clipping bound; None: off.")
      .def_readwrite("maximize", &GradPreHyper::maximize)
      .def("__repr__", &struct_repr);
  bind_hyper<AdamHyper>(
      m, "AdamHyper", "Adam/AdamW hyperparameters of one adam_step call.",
      field("lr", &AdamHyper::lr), field("beta1", &AdamHyper::beta1),
      field("beta2", &AdamHyper::beta2), field("eps", &AdamHyper::eps),
      field("weight_decay", &AdamHyper::weight_decay), field("amsgrad", &AdamHyper::amsgrad),
      field("decoupled", &AdamHyper::decoupled, "Decoupled weight decay (AdamW)."),
      field("step", &AdamHyper::step, int64_t{1}, "The step being taken, >= 1."),
      pre_field<AdamHyper>());
  bind_hyper<RmspropHyper>(
      m, "RmspropHyper", "RMSprop hyperparameters of one rmsprop_step call.",
      field("lr", &RmspropHyper::lr), field("alpha", &RmspropHyper::alpha),
      field("eps", &RmspropHyper::eps), field("weight_decay", &RmspropHyper::weight_decay),
      field("momentum", &RmspropHyper::momentum), field("centered", &RmspropHyper::centered),
      pre_field<RmspropHyper>());
  bind_hyper<SgdHyper>(
      m, "SgdHyper", "SGD hyperparameters of one sgd_step call.",
      field("lr", &SgdHyper::lr), field("momentum", &SgdHyper::momentum),
      field("dampening", &SgdHyper::dampening), field("weight_decay", &SgdHyper::weight_decay),
      field("nesterov", &SgdHyper::nesterov),
      field("first", &SgdHyper::first, false,
            "The momentum buffer is uninitialised for these segments (buf = g)."),
      pre_field<SgdHyper>());
  bind_hyper<AdagradHyper>(
      m, "AdagradHyper", "Adagrad hyperparameters of one adagrad_step call.",
      field("lr", &AdagradHyper::lr), field("lr_decay", &AdagradHyper::lr_decay),
      field("weight_decay", &AdagradHyper::weight_decay), field("eps", &AdagradHyper::eps),
      field("step", &AdagradHyper::step, int64_t{1}, "The step being taken, >= 1."),
      pre_field<AdagradHyper>());
  bind_hyper<NadamHyper>(
      m, "NadamHyper", "NAdam hyperparameters of one nadam_step call.",
      field("lr", &NadamHyper::lr), field("beta1", &NadamHyper::beta1),
      field("beta2", &NadamHyper::beta2), field("eps", &NadamHyper::eps),
      field("weight_decay", &NadamHyper::weight_decay),
      field("momentum_decay", &NadamHyper::momentum_decay),
      field("decoupled", &NadamHyper::decoupled, "Decoupled weight decay (p *= 1 - lr wd)."),
      field("step", &NadamHyper::step, int64_t{1}, "The step being taken, >= 1."),
      field("mu_product", &NadamHyper::mu_product, 1.0,
            "Product of mu over the steps before this one (float32 value, as torch keeps it)."),
      pre_field<NadamHyper>());
}

}  // namespace

void register_optim(py::module_& m) {
  using py::arg;
  bind_hyper_structs(m);
  m.def("grad_norms", &grad_norms_py, arg("grad"), arg("seg_offsets"), arg("seg_lengths"),
        arg("norm_type") = 2.0, arg("out") = py::none(),
        "Read-only norm pass over segments of the flat gradient: returns (total_norm, per_segment "
        "norms as float64). norm_type 2.0 or inf. Bitwise identical for any thread count/ISA; a "
        "non-finite gradient gives a non-finite segment norm.");
  m.def("grad_scale_clamp", &scale_clamp_py, arg("grad"), arg("seg_offsets"), arg("seg_lengths"),
        arg("pre"),
        "In place over the segments: grad = clamp(grad * pre.grad_scale, -pre.clip_value, "
        "pre.clip_value), negated when pre.maximize.");
  // The optimizer calls these positionally once per group per step; the hyperparameters are
  // one cached struct, so no scalar is parsed per call.
  m.def("adam_step", &adam_py, arg("param"), arg("grad"), arg("exp_avg"), arg("exp_avg_sq"),
        arg("max_exp_avg_sq"), arg("seg_offsets"), arg("seg_lengths"), arg("hyper"),
        "One fused Adam/AdamW step over the segments of the flat buffers (PyTorch semantics); "
        "the gradient is read through hyper.pre and never written. max_exp_avg_sq may be None "
        "unless hyper.amsgrad.");
  m.def("rmsprop_step", &rmsprop_py, arg("param"), arg("grad"), arg("square_avg"),
        arg("grad_avg"), arg("momentum_buffer"), arg("seg_offsets"), arg("seg_lengths"),
        arg("hyper"),
        "One fused RMSprop step over the segments of the flat buffers (PyTorch semantics); "
        "grad_avg may be None unless hyper.centered, momentum_buffer unless hyper.momentum > 0.");
  m.def("sgd_step", &sgd_py, arg("param"), arg("grad"), arg("momentum_buffer"),
        arg("seg_offsets"), arg("seg_lengths"), arg("hyper"),
        "One fused SGD step over the segments of the flat buffers (PyTorch semantics); "
        "momentum_buffer may be None when hyper.momentum == 0; hyper.first initialises it with "
        "the gradient.");
  m.def("adagrad_step", &adagrad_py, arg("param"), arg("grad"), arg("sum"), arg("seg_offsets"),
        arg("seg_lengths"), arg("hyper"),
        "One fused Adagrad step over the segments of the flat buffers (PyTorch semantics, "
        "clr = lr / (1 + (hyper.step - 1) * lr_decay)); the gradient is never written.");
  m.def("nadam_step", &nadam_py, arg("param"), arg("grad"), arg("exp_avg"), arg("exp_avg_sq"),
        arg("seg_offsets"), arg("seg_lengths"), arg("hyper"),
        "One fused NAdam step over the segments of the flat buffers (PyTorch semantics); returns "
        "mu_product after this step (float32(hyper.mu_product) * float32(mu_t), as torch).");
}

}  // namespace sg::bind
