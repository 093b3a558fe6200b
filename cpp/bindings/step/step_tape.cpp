// Binding of cpp/step/step_tape.h: `_core.StepTape`, a compiled step's layers (Linear,
// BatchNorm1d on (N, C) in training mode, the elementwise activations) recorded once per input
// shape by steadygrad.compiled and then run as one call per step, run(x, labels) (forward, a
// CrossEntropyLoss, backward), or as forward(x) and backward(grad_output) around another
// loss, with the GIL released and no per-layer Python. Each add_* checks its
// arrays as the layer's own binding does (the tape keeps them alive) and records closures that
// call the same driver with the same arguments as that binding, so results are bitwise the
// eager path's. Parameter gradients are written (beta = 0), as the first backward after
// zero_grad does; the first layer computes no dL/dx. A layer with parameters may carry a
// Python callable, called (the GIL taken for it) as soon as its backward has written them:
// the eager Module's gradients-written hook (data parallelism starts its allreduces there).
// With a norm asked of run()/backward() (2 or inf), each layer's backward also leaves, for each
// parameter gradient it wrote, the optimizer norm pass's partial of it (grad_norm_partial:
// bitwise what that pass would compute) in `grad_partials`, one per gradient in recording
// order, so the optimizer step reads no gradient twice.
#include <cstdint>
#include <deque>
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "bindings/checks.h"
#include "bindings/layers/loss_common.h"
#include "layers/activations.h"
#include "layers/batchnorm.h"
#include "layers/linear.h"
#include "layers/pointwise.h"
#include "layers/softmax_xent.h"
#include "optim/optim.h"
#include "step/step_tape.h"

namespace sg::bind {
namespace {

using std::to_string;

// A layer's gradients-written hook: None, or a callable run with the GIL held. Shared by the
// closure's copies; created and destroyed with the GIL held (by the tape's owner).
using Hook = std::shared_ptr<py::object>;

Hook make_hook(const char* fn, py::handle obj) {
  if (obj.is_none()) return nullptr;
  if (!PyCallable_Check(obj.ptr())) {
    type_error(fn, std::string("on_written must be callable or None, got ") +
                       py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  }
  return std::make_shared<py::object>(py::reinterpret_borrow<py::object>(obj));
}

void call_hook(const Hook& hook) {
  if (!hook) return;
  py::gil_scoped_acquire gil;
  (*hook)();
}

class PyStepTape {
 public:
  PyStepTape(int64_t batch, int64_t in_features) : batch_(batch), cols_(in_features) {
    if (batch < 1 || in_features < 1) {
      value_error("StepTape", "batch and in_features must be >= 1, got (" + to_string(batch) +
                                  ", " + to_string(in_features) + ")");
    }
    in_cols_ = in_features;
    input_ = tape_.new_slot();
    act_ = input_;
  }

  void add_linear(py::handle w_obj, py::handle b_obj, py::handle dw_obj, py::handle db_obj,
                  bool relu, py::handle hook_obj) {
    const char* fn = "StepTape.add_linear";
    const Hook hook = make_hook(fn, hook_obj);
    py::array w = f32_array(fn, "weight", w_obj, 2);
    require_shape(fn, "weight", w, {-1, cols_});
    const int64_t out_f = w.shape(0), in_f = cols_, n = batch_;
    py::array b, db;
    const float* bp = opt_vector(fn, "bias", b_obj, out_f, &b);
    py::array dw = inplace_array(fn, "grad_weight", dw_obj, {out_f, in_f});
    float* dbp = nullptr;
    if (bp) {
      db = inplace_array(fn, "grad_bias", db_obj, {out_f});
      dbp = f32_ptr(db);
    }
    const Layer l = begin_layer(out_f, /*needs_dx=*/true);
    float* y = l.out;
    float* dx = l.dx;
    float* mask = relu ? f32_ptr(keep(new_f32({n, out_f}))) : nullptr;
    const float* wp = f32_cptr(w);
    float* dwp = f32_ptr(dw);
    const float** xs = l.x;
    const float** dys = l.dy;
    const Activation act = relu ? Activation::relu : Activation::none;
    const int64_t slot = new_partials(bp ? 2 : 1);
    tape_.forward_steps.push_back(
        [=] { linear_forward_f32(y, *xs, wp, bp, n, in_f, out_f, act); });
    tape_.backward_steps.push_back([=] {
      const float* dy = *dys;
      if (mask) {  // the absorbed ReLU's backward, as the ReLU layer runs it: mask by y > 0
        activation_kernels().backward(Activation::relu, mask, dy, y, n * out_f, ActParam{});
        dy = mask;
      }
      linear_backward_f32(dx, dwp, dbp, dy, *xs, wp, n, in_f, out_f, 0.0f, 0.0f);
      partial(slot, dwp, out_f * in_f);
      if (dbp) partial(slot + 1, dbp, out_f);
      call_hook(hook);
    });
    keep_all({w, b, dw, db});
  }

  void add_batchnorm(py::handle g_obj, py::handle b_obj, py::handle dg_obj, py::handle db_obj,
                     py::handle rm_obj, py::handle rv_obj, py::handle nbt_obj,
                     py::handle momentum_obj, double eps, bool relu, py::handle hook_obj) {
    const char* fn = "StepTape.add_batchnorm";
    const Hook hook = make_hook(fn, hook_obj);
    const int64_t c = cols_, n = batch_;
    if (n <= 1) {
      value_error(fn, "Expected more than 1 value per channel when training, got a batch of " +
                          to_string(n));
    }
    py::array g, b, dg, db, rm, rv;
    const float* gp = opt_vector(fn, "weight", g_obj, c, &g);
    const float* bp = opt_vector(fn, "bias", b_obj, c, &b);
    float* dgp = nullptr;
    float* dbp = nullptr;
    if (gp) {
      dg = inplace_array(fn, "grad_weight", dg_obj, {c});
      dgp = f32_ptr(dg);
    }
    if (bp) {
      db = inplace_array(fn, "grad_bias", db_obj, {c});
      dbp = f32_ptr(db);
    }
    float* rmp = nullptr;
    float* rvp = nullptr;
    if (!rm_obj.is_none()) {
      rm = inplace_array(fn, "running_mean", rm_obj, {c});
      rv = inplace_array(fn, "running_var", rv_obj, {c});
      rmp = f32_ptr(rm);
      rvp = f32_ptr(rv);
    }
    const bool cumulative = momentum_obj.is_none();
    const double m_arg = cumulative ? 0.0 : momentum_obj.cast<double>();
    if (!(m_arg >= 0.0 && m_arg <= 1.0)) {
      value_error(fn, "momentum must be in [0, 1] or None, got " + to_string(m_arg));
    }
    if (!(eps >= 0.0)) value_error(fn, "eps must be >= 0, got " + to_string(eps));
    const float momentum = static_cast<float>(m_arg);
    const float e = static_cast<float>(eps);
    int64_t* counter = nullptr;
    py::array t;
    if (!nbt_obj.is_none()) {
      if (!py::isinstance<py::array>(nbt_obj)) {
        type_error(fn, "num_batches_tracked must be an int64 array with one element");
      }
      t = py::reinterpret_borrow<py::array>(nbt_obj);
      if (t.dtype().kind() != 'i' || t.itemsize() != 8 || t.size() != 1) {
        type_error(fn, "num_batches_tracked must be an int64 array with one element, got " +
                           dtype_str(t) + " array of shape " + shape_str(t));
      }
      require_writeable(fn, "num_batches_tracked", t);
      require_aligned(fn, "num_batches_tracked", t);
      counter = static_cast<int64_t*>(t.mutable_data());
    }
    if (counter) counters_.push_back(counter);
    float* sm = f32_ptr(keep(new_f32({c})));
    float* si = f32_ptr(keep(new_f32({c})));
    const int64_t slot = new_partials((gp ? 1 : 0) + (bp ? 1 : 0));
    const Layer l = begin_layer(c, /*needs_dx=*/true);
    float* y = l.out;
    float* dx = l.dx;
    const float** xs = l.x;
    const float** dys = l.dy;
    tape_.forward_steps.push_back([=] {
      // the binding's running_stats(): the cumulative factor from the count before this batch
      float m = momentum;
      if (cumulative) {
        m = counter ? static_cast<float>(1.0 / static_cast<double>(*counter + 1)) : 0.0f;
      }
      if (counter) *counter += 1;
      batchnorm_kernels().forward_train(y, sm, si, rmp, rvp, *xs, gp, bp, n, c, e, m, relu);
    });
    tape_.backward_steps.push_back([=] {
      batchnorm_kernels().backward(dx, dgp, dbp, *dys, *xs, nullptr, sm, si, gp, bp, n, c, true,
                                   0.0f, 0.0f, relu, nullptr, n);
      if (dgp) partial(slot, dgp, c);
      if (dbp) partial(slot + (dgp ? 1 : 0), dbp, c);
      call_hook(hook);
    });
    keep_all({g, b, dg, db, rm, rv, t});
  }

  void add_activation(const std::string& name, double a, double b) {
    const char* fn = "StepTape.add_activation";
    static const std::map<std::string, Activation> kNames = {
        {"relu", Activation::relu},       {"leaky_relu", Activation::leaky_relu},
        {"gelu", Activation::gelu},       {"gelu_tanh", Activation::gelu_tanh},
        {"tanh", Activation::tanh},       {"sigmoid", Activation::sigmoid},
        {"silu", Activation::silu},       {"elu", Activation::elu},
        {"softplus", Activation::softplus}};
    const auto it = kNames.find(name);
    if (it == kNames.end()) value_error(fn, "unknown activation '" + name + "'");
    const Activation act = it->second;
    const ActParam param{static_cast<float>(a), static_cast<float>(b)};
    const bool saved_is_y = act_backward_uses_output(act);
    add_elementwise(
        [=](float* y, const float* x, int64_t n) {
          activation_kernels().forward(act, y, x, n, param);
        },
        [=](float* dx, const float* dy, const float* y, const float* x, int64_t n) {
          activation_kernels().backward(act, dx, dy, saved_is_y ? y : x, n, param);
        });
  }

  // The loss as CrossEntropyLoss(weight, ignore_index, reduction, label_smoothing) computes it
  // on class indices, for run(): the softmax_cross_entropy binding's kernel and arguments.
  void set_cross_entropy(py::handle weight_obj, int64_t ignore_index, const std::string& reduction,
                         double label_smoothing) {
    const char* fn = "StepTape.set_cross_entropy";
    const Reduction red = loss_reduction(fn, reduction);
    if (red == Reduction::kNone) value_error(fn, "reduction must be 'mean' or 'sum', got 'none'");
    if (!(label_smoothing >= 0.0 && label_smoothing <= 1.0)) {
      value_error(fn, "label_smoothing must be in [0.0, 1.0], got " + to_string(label_smoothing));
    }
    py::array w;
    const float* wp = class_weight(fn, weight_obj, cols_, &w);
    xent_weight_ = w;
    xent_w_ = wp;
    xent_red_ = red;
    xent_ignore_ = ignore_index;
    xent_smoothing_ = static_cast<float>(label_smoothing);
    dlogits_ = new_f32({batch_, cols_});
    has_loss_ = true;
  }

  // A training-mode Dropout(p), 0 < p <= 1: its mask from the seed forward()/run() are given
  // for it (drawn by the caller as the layer draws it), forward and backward alike.
  void add_dropout(double p) {
    const char* fn = "StepTape.add_dropout";
    if (!(p > 0.0 && p <= 1.0)) value_error(fn, "p must be in (0, 1], got " + to_string(p));
    const DropoutParams d = dropout_params(p);
    seeds_.push_back(0);
    const uint64_t* seed = &seeds_.back();
    add_elementwise(
        [=](float* y, const float* x, int64_t n) {
          dropout_f32(y, x, n, *seed, d.threshold, d.scale);
        },
        [=](float* dx, const float* dy, const float*, const float*, int64_t n) {
          dropout_f32(dx, dy, n, *seed, d.threshold, d.scale);
        });
  }

  py::array forward(py::handle x_obj, const std::vector<uint64_t>& seeds) {
    set_seeds(seeds);
    const py::array x = input(x_obj);
    {
      py::gil_scoped_release release;
      tape_.forward();
    }
    return output_;
  }

  // forward, the cross-entropy of the output against labels and its gradient, backward: one
  // call, the GIL released once. The labels are checked before anything runs. Returns the loss.
  py::object run(py::handle x_obj, py::handle labels_obj, const std::vector<uint64_t>& seeds,
                 double norm) {
    const char* fn = "compiled step";
    if (!has_loss_) value_error(fn, "run() needs set_cross_entropy() first");
    set_norm(norm);
    set_seeds(seeds);
    double count = 0.0;
    const py::array y = class_labels(fn, labels_obj, output_, "the model's output", xent_ignore_,
                                     xent_w_, &count);
    const py::array x = input(x_obj);
    const XentArgs args{f32_ptr(dlogits_), nullptr, f32_cptr(output_), xent_w_, nullptr, batch_,
                        cols_, xent_ignore_, xent_smoothing_, loss_scale(xent_red_, count)};
    *last_dy_ = f32_cptr(dlogits_);
    double total;
    {
      py::gil_scoped_release release;
      tape_.forward();
      const SoftmaxXentKernels& k = softmax_xent_kernels();
      total = y.itemsize() == 8 ? k.i64(args, static_cast<const int64_t*>(y.data()))
                                : k.i32(args, static_cast<const int32_t*>(y.data()));
      tape_.backward();
    }
    x_keep_ = py::none();
    return loss_value(xent_red_, total, count, py::none());
  }

  void backward(py::handle dy_obj, double norm) {
    const char* fn = "compiled step";
    if (x_keep_.is_none()) value_error(fn, "backward before forward");
    set_norm(norm);
    py::array dy = batch_matrix(fn, "grad_output", dy_obj, "the output's shape", batch_,
                                "features", cols_);
    *last_dy_ = f32_cptr(dy);
    {
      py::gil_scoped_release release;
      tape_.backward();
    }
    x_keep_ = py::none();
  }

  py::array output() const { return output_; }
  py::array grad_partials() const { return partials_; }
  py::object grad_output() const { return has_loss_ ? py::object(dlogits_) : py::object(py::none()); }
  int64_t batch() const { return batch_; }
  int64_t layers() const { return layers_; }

 private:
  struct Layer {
    float* out;
    float* dx;  // null for the first layer (or when not needed)
    const float** x;
    const float** dy;
  };

  // 0: no partials; 2: sums of squares; inf: max|g| (each run/backward says which).
  void set_norm(double norm) {
    if (!(norm == 0.0 || norm == 2.0 || norm == INFINITY)) {
      value_error("compiled step", "norm must be 0 (none), 2 or inf, got " + to_string(norm));
    }
    norm_ = norm;
    std::fill_n(partials_ptr_, partials_.size(), NAN);  // NaN: not asked for, or not written
  }
  void partial(int64_t slot, const float* g, int64_t n) {
    if (norm_ == 0.0) return;
    partials_ptr_[slot] = grad_norm_partial(g, n, norm_ != 2.0);  // (the GIL is released)
  }
  // count new partial slots; returns the first.
  int64_t new_partials(int64_t count) {
    const int64_t first = partials_.size();
    py::array_t<double> grown(first + count);
    if (first) std::copy_n(static_cast<const double*>(partials_.data()), first,
                           static_cast<double*>(grown.mutable_data()));
    partials_ = grown;
    partials_ptr_ = static_cast<double*>(partials_.mutable_data());
    return first;
  }

  // One seed per Dropout layer, in layer order (checked before anything runs).
  void set_seeds(const std::vector<uint64_t>& seeds) {
    if (seeds.size() != seeds_.size()) {
      value_error("compiled step", "expected " + to_string(seeds_.size()) +
                                       " dropout seeds, got " + to_string(seeds.size()));
    }
    size_t i = 0;
    for (uint64_t& s : seeds_) s = seeds[i++];
  }

  // An elementwise layer: forward(y, x, n); backward(dx, dy, y, x, n), left out on the
  // input itself (nothing needs its gradient).
  template <class Forward, class Backward>
  void add_elementwise(Forward forward, Backward backward) {
    const int64_t count = batch_ * cols_;
    const bool first = layers_ == 0;
    const Layer l = begin_layer(cols_, /*needs_dx=*/!first);
    float* y = l.out;
    float* dx = l.dx;
    const float** xs = l.x;
    const float** dys = l.dy;
    tape_.forward_steps.push_back([=] { forward(y, *xs, count); });
    if (!first) tape_.backward_steps.push_back([=] { backward(dx, *dys, y, *xs, count); });
  }

  // x checked as the tape's input and set in its slot (kept: the backward reads it).
  py::array input(py::handle x_obj) {
    const char* fn = "compiled step";
    if (layers_ == 0) value_error(fn, "the tape has no layer");
    py::array x = f32_array(fn, "input", x_obj, 2);
    require_shape(fn, "input", x, {batch_, in_cols_});
    for (const int64_t* c : counters_) {
      if (*c == INT64_MAX) value_error(fn, "num_batches_tracked is at the int64 maximum");
    }
    *input_ = f32_cptr(x);
    x_keep_ = x;
    return x;
  }

  // A new layer of `out_cols` outputs: its output array, its dL/dx (fed to the previous
  // layer's dy slot), its input slot (the previous output) and its own dy slot.
  Layer begin_layer(int64_t out_cols, bool needs_dx) {
    Layer l{};
    l.x = act_;
    if (layers_ > 0 && needs_dx) {
      l.dx = f32_ptr(keep(new_f32({batch_, cols_})));
      *prev_dy_ = l.dx;
    }
    output_ = new_f32({batch_, out_cols});
    keep(output_);
    l.out = f32_ptr(output_);
    l.dy = tape_.new_slot();
    prev_dy_ = l.dy;
    last_dy_ = l.dy;
    act_ = tape_.new_slot(l.out);
    cols_ = out_cols;
    ++layers_;
    return l;
  }

  py::array& keep(py::array a) {
    kept_.push_back(a);
    return kept_.back();
  }
  void keep_all(std::initializer_list<py::array> arrays) {
    for (const py::array& a : arrays) {
      if (a) kept_.push_back(a);
    }
  }

  StepTape tape_;
  std::vector<py::array> kept_;  // every array a closure points into
  std::vector<int64_t*> counters_;
  std::deque<uint64_t> seeds_;  // one per Dropout layer (stable addresses)
  int64_t batch_, cols_, in_cols_ = 0, layers_ = 0;
  const float** input_ = nullptr;
  const float** act_ = nullptr;
  const float** prev_dy_ = nullptr;
  const float** last_dy_ = nullptr;
  py::array output_;
  py::array partials_ = py::array_t<double>(0);  // grad_norm_partial per gradient written
  double* partials_ptr_ = nullptr;
  double norm_ = 0.0;
  py::object x_keep_ = py::none();
  // the fused loss (set_cross_entropy)
  bool has_loss_ = false;
  py::array dlogits_, xent_weight_;
  const float* xent_w_ = nullptr;
  Reduction xent_red_ = Reduction::kMean;
  int64_t xent_ignore_ = -100;
  float xent_smoothing_ = 0.0f;
};

}  // namespace

void register_step_tape(py::module_& m) {
  using py::arg;
  py::class_<PyStepTape>(
      m, "StepTape",
      "A compiled step's layers, recorded once per input shape (steadygrad.compiled) "
      "and run as forward(x) and backward(grad_output) with no per-layer Python: bitwise the "
      "eager layers' results. Parameter gradients are written (as after zero_grad); the first "
      "layer computes no dL/dx.")
      .def(py::init<int64_t, int64_t>(), arg("batch"), arg("in_features"))
      .def("add_linear", &PyStepTape::add_linear, arg("weight"), arg("bias"),
           arg("grad_weight"), arg("grad_bias"), py::kw_only(), arg("relu") = false,
           arg("on_written") = py::none(),
           "A Linear (its ReLU fused into the GEMM's epilogue when relu=True); on_written() "
           "is called once its backward has written the gradients.")
      .def("add_batchnorm", &PyStepTape::add_batchnorm, arg("weight"), arg("bias"),
           arg("grad_weight"), arg("grad_bias"), arg("running_mean"), arg("running_var"),
           arg("num_batches_tracked"), py::kw_only(), arg("momentum"), arg("eps"),
           arg("relu") = false, arg("on_written") = py::none(),
           "A training-mode BatchNorm1d on (batch, C), ReLU fused if asked; on_written() as "
           "add_linear's.")
      .def("add_activation", &PyStepTape::add_activation, arg("name"), arg("a") = 0.0,
           arg("b") = 0.0, "An elementwise activation by kernel name, with its parameters.")
      .def("add_dropout", &PyStepTape::add_dropout, arg("p"),
           "A training-mode Dropout(p), its mask from the seed each call gives it.")
      .def("forward", &PyStepTape::forward, arg("input"), arg("seeds") = std::vector<uint64_t>{},
           "Runs every layer's forward on input (batch, in_features); returns the last "
           "layer's output array (the tape's own, overwritten by the next forward).")
      .def("set_cross_entropy", &PyStepTape::set_cross_entropy, arg("weight"),
           arg("ignore_index"), arg("reduction"), arg("label_smoothing"),
           "The loss run() computes: CrossEntropyLoss on class indices with these arguments.")
      .def("run", &PyStepTape::run, arg("input"), arg("labels"),
           arg("seeds") = std::vector<uint64_t>{}, arg("norm") = 0.0,
           "forward, the cross-entropy against labels and its gradient, backward, in one call "
           "(the GIL released once); returns the loss. The labels are checked first.")
      .def_property_readonly("grad_output", &PyStepTape::grad_output,
                             "run()'s dL/d(output), or None before set_cross_entropy().")
      .def("backward", &PyStepTape::backward, arg("grad_output"), arg("norm") = 0.0,
           "Runs every layer's backward from dL/d(output), writing the parameter gradients.")
      .def_property_readonly("output", &PyStepTape::output)
      .def_property_readonly("grad_partials", &PyStepTape::grad_partials,
                             "The last run/backward's norm partial of each parameter gradient "
                             "(recording order; NaN where none was asked or written).")
      .def_property_readonly("batch", &PyStepTape::batch)
      .def_property_readonly("layers", &PyStepTape::layers);
}

}  // namespace sg::bind
