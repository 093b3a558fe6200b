// Bindings for cpp/optim/optim.h: the fused optimizer steps (their hyperparameter structs are
// bound in hyper.cpp), the segmented gradient-norm pass and gradient clipping over the flat
// buffers. Every array is checked (dtype, rank, length, writeability,
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
#include <array>
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

// Each named array (None: skipped) shares no memory with any other.
void all_disjoint(const char* fn, const std::vector<std::pair<const char*, py::handle>>& arrs) {
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

// One state buffer of a step, updated in place, of param's flat length. An optional one may
// be None unless `needed` (`why`: the flag that needs it) and reaches the kernel only when
// needed (else null, even when given).
struct State {
  const char* name;
  py::handle obj;
  bool optional = false;
  bool needed = true;
  const char* why = nullptr;
};
State state(const char* name, py::handle obj) { return {name, obj}; }
State optional_state(const char* name, py::handle obj, bool needed, const char* why) {
  return {name, obj, true, needed, why};
}

// The checked operands of one step call: param (written), grad (read), the state buffers in
// their order, the segments. Holds the arrays while the kernel runs.
template <size_t N>
struct StepArrays {
  float* param;
  const float* grad;
  std::array<float*, N> state;
  SegArrays seg;
  std::vector<py::array> keep;
};

// Checks, in this order: param, grad, each state buffer, that no two of them overlap, the
// segments.
template <size_t N>
StepArrays<N> step_arrays(const char* fn, py::handle p_obj, py::handle g_obj,
                          const std::array<State, N>& states, py::handle off_obj,
                          py::handle len_obj) {
  StepArrays<N> r;
  r.keep.reserve(N + 2);
  r.keep.push_back(flat(fn, "param", p_obj, -1, true));
  r.param = f32_ptr(r.keep.back());
  const int64_t n = r.keep.back().shape(0);
  r.keep.push_back(flat(fn, "grad", g_obj, n, false));
  r.grad = f32_cptr(r.keep.back());
  std::vector<std::pair<const char*, py::handle>> named{{"param", p_obj}, {"grad", g_obj}};
  named.reserve(N + 2);
  for (size_t i = 0; i < N; ++i) {
    const State& st = states[i];
    if (st.optional) {
      float* ptr = opt_flat(fn, st.name, st.obj, n, st.needed, st.why, r.keep);
      r.state[i] = st.needed ? ptr : nullptr;
    } else {
      r.keep.push_back(flat(fn, st.name, st.obj, n, true));
      r.state[i] = f32_ptr(r.keep.back());
    }
    named.emplace_back(st.name, st.obj);
  }
  all_disjoint(fn, named);
  r.seg = segments(fn, off_obj, len_obj, n, true);
  return r;
}

// The step counter of the structs that have one: bias corrections divide by 1 - beta^step.
void require_step(const char* fn, int64_t step) {
  if (step < 1) {
    value_error(fn, "hyper.step must be >= 1 (the step being taken), got " + std::to_string(step));
  }
}

std::string num(double x) { return py::repr(py::float_(x)).cast<std::string>(); }

// true for the inf-norm, false for the 2-norm; anything else raises.
bool fused_inf_norm(const char* fn, double norm_type) {
  const bool inf = std::isinf(norm_type) && norm_type > 0;
  if (!inf && norm_type != 2.0) {
    value_error(fn, "norm_type must be 2.0 or inf for the fused kernel, got " + num(norm_type));
  }
  return inf;
}

// A writeable C-contiguous float64 array of `count` elements (count < 0: any) named `name`;
// `optional`: the argument may also be None (the caller handles that), as the message says.
py::array f64_vector(const char* fn, const char* name, py::handle obj, int64_t count,
                     bool optional) {
  if (!py::isinstance<py::array_t<double, 0>>(obj) ||
      py::reinterpret_borrow<py::array>(obj).dtype().kind() != 'f' ||
      py::reinterpret_borrow<py::array>(obj).itemsize() != 8) {
    type_error(fn, std::string(name) + " must be a float64 numpy.ndarray" +
                       (optional ? " or None" : ""));
  }
  py::array a = py::reinterpret_borrow<py::array>(obj);
  if (!(a.ndim() == 1 && (count < 0 || a.shape(0) == count) && (a.flags() & py::array::c_style))) {
    value_error(fn, std::string(name) + " must be a C-contiguous float64 array of shape (" +
                        (count < 0 ? std::string("n") : std::to_string(count)) + ",), got " +
                        shape_str(a));
  }
  require_writeable(fn, name, a);
  require_aligned(fn, name, a);
  return a;
}

py::tuple grad_norms_py(py::handle grad_obj, py::handle off_obj, py::handle len_obj,
                        double norm_type, py::handle out_obj) {
  const char* fn = "grad_norms";
  py::array g = flat(fn, "grad", grad_obj, -1, false);
  SegArrays seg = segments(fn, off_obj, len_obj, g.shape(0), false);
  const bool inf = fused_inf_norm(fn, norm_type);
  py::array out = out_obj.is_none() ? py::array(py::array_t<double>(seg.s.count))
                                    : f64_vector(fn, "out", out_obj, seg.s.count, true);
  const float* gp = f32_cptr(g);
  double* op = static_cast<double*>(out.mutable_data());
  double total;
  {
    py::gil_scoped_release release;
    total = grad_norms(gp, seg.s, inf, op);
  }
  return py::make_tuple(total, out);
}

// grad_norms' combine on partials made elsewhere (the compiled step's backward): in place.
double combine_norm_partials_py(py::handle per_obj, double norm_type) {
  const char* fn = "combine_norm_partials";
  const bool inf = fused_inf_norm(fn, norm_type);
  py::array per = f64_vector(fn, "partials", per_obj, -1, false);
  return combine_norm_partials(static_cast<double*>(per.mutable_data()), per.shape(0), inf);
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
  auto a = step_arrays<3>(fn, p_obj, g_obj,
                          {state("exp_avg", m_obj), state("exp_avg_sq", v_obj),
                           optional_state("max_exp_avg_sq", vmax_obj, h.amsgrad,
                                          "when hyper.amsgrad=True")},
                          off_obj, len_obj);
  require_step(fn, h.step);
  py::gil_scoped_release release;
  adam_step(a.param, a.state[0], a.state[1], a.state[2], a.grad, a.seg.s, h);
}

void rmsprop_py(py::handle p_obj, py::handle g_obj, py::handle sq_obj, py::handle ga_obj,
                py::handle buf_obj, py::handle off_obj, py::handle len_obj,
                const RmspropHyper& hyper) {
  const RmspropHyper h = hyper;
  auto a = step_arrays<3>(
      "rmsprop_step", p_obj, g_obj,
      {state("square_avg", sq_obj),
       optional_state("grad_avg", ga_obj, h.centered, "when hyper.centered=True"),
       optional_state("momentum_buffer", buf_obj, h.momentum > 0.0, "when hyper.momentum > 0")},
      off_obj, len_obj);
  py::gil_scoped_release release;
  rmsprop_step(a.param, a.state[0], a.state[1], a.state[2], a.grad, a.seg.s, h);
}

void sgd_py(py::handle p_obj, py::handle g_obj, py::handle buf_obj, py::handle off_obj,
            py::handle len_obj, const SgdHyper& hyper) {
  const SgdHyper h = hyper;
  auto a = step_arrays<1>("sgd_step", p_obj, g_obj,
                          {optional_state("momentum_buffer", buf_obj, h.momentum != 0.0,
                                          "when hyper.momentum != 0")},
                          off_obj, len_obj);
  py::gil_scoped_release release;
  sgd_step(a.param, a.state[0], a.grad, a.seg.s, h);
}

void adagrad_py(py::handle p_obj, py::handle g_obj, py::handle sum_obj, py::handle off_obj,
                py::handle len_obj, const AdagradHyper& hyper) {
  const char* fn = "adagrad_step";
  const AdagradHyper h = hyper;
  auto a = step_arrays<1>(fn, p_obj, g_obj, {state("sum", sum_obj)}, off_obj, len_obj);
  require_step(fn, h.step);
  py::gil_scoped_release release;
  adagrad_step(a.param, a.state[0], a.grad, a.seg.s, h);
}

double nadam_py(py::handle p_obj, py::handle g_obj, py::handle m_obj, py::handle v_obj,
                py::handle off_obj, py::handle len_obj, const NadamHyper& hyper) {
  const char* fn = "nadam_step";
  const NadamHyper h = hyper;
  auto a = step_arrays<2>(fn, p_obj, g_obj, {state("exp_avg", m_obj), state("exp_avg_sq", v_obj)},
                          off_obj, len_obj);
  require_step(fn, h.step);
  py::gil_scoped_release release;
  return nadam_step(a.param, a.state[0], a.state[1], a.grad, a.seg.s, h);
}

}  // namespace

void register_optim_hyper(py::module_& m);  // optim/hyper.cpp

void register_optim(py::module_& m) {
  using py::arg;
  register_optim_hyper(m);  // first: the step functions' signatures name the structs
  m.def("grad_norms", &grad_norms_py, arg("grad"), arg("seg_offsets"), arg("seg_lengths"),
        arg("norm_type") = 2.0, arg("out") = py::none(),
        "Read-only norm pass over segments of the flat gradient: returns (total_norm, per_segment "
        "norms as float64). norm_type 2.0 or inf. Bitwise identical for any thread count/ISA; a "
        "non-finite gradient gives a non-finite segment norm.");
  m.def("combine_norm_partials", &combine_norm_partials_py, arg("partials"),
        arg("norm_type") = 2.0,
        "grad_norms' fixed-order combine, in place: partials (float64, one per segment in "
        "segment order: sums of squares, or max|g| for inf) become the segments' norms; returns "
        "the total norm, bitwise what grad_norms returns over the gradients they came from.");
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
