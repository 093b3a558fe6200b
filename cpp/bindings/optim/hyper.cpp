// Bindings of the optimizer hyperparameter structs of cpp/optim/optim.h: GradPreHyper and one
// class per optimizer (AdamHyper, ...), each from its fields listed once: a keyword-only
// constructor, a read-write property per field and a repr. Values are not checked here (see
// optim.cpp's header: steadygrad.optim._hyper is their one validator).
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "bindings/checks.h"
#include "optim/optim.h"

namespace sg::bind {
namespace {

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
// The fields several structs have, named and documented once.
template <class H>
DefaultedField<H, GradPreHyper, GradPreHyper> pre_field() {
  return field("pre", &H::pre, GradPreHyper(), "The gradient prologue (GradPreHyper).");
}
template <class H>
DefaultedField<H, int64_t, int64_t> step_field() {
  return field("step", &H::step, int64_t{1}, "The step being taken, >= 1.");
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

// A struct from its fields, listed once in order: a keyword-only constructor taking them
// (each set by its member, so adjacent doubles cannot depend on declaration order), a
// read-write property each and the struct_repr.
template <class H, class... F>
void bind_struct(py::module_& m, const char* name, const char* doc, const F&... fields) {
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

// One optimizer's struct: its own fields, then the gradient prologue `pre` every one has.
template <class H, class... F>
void bind_hyper(py::module_& m, const char* name, const char* doc, const F&... fields) {
  bind_struct<H>(m, name, doc, fields..., pre_field<H>());
}

}  // namespace

void register_optim_hyper(py::module_& m) {
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
      step_field<AdamHyper>());
  bind_hyper<RmspropHyper>(
      m, "RmspropHyper", "RMSprop hyperparameters of one rmsprop_step call.",
      field("lr", &RmspropHyper::lr), field("alpha", &RmspropHyper::alpha),
      field("eps", &RmspropHyper::eps), field("weight_decay", &RmspropHyper::weight_decay),
      field("momentum", &RmspropHyper::momentum), field("centered", &RmspropHyper::centered));
  bind_hyper<SgdHyper>(
      m, "SgdHyper", "SGD hyperparameters of one sgd_step call.",
      field("lr", &SgdHyper::lr), field("momentum", &SgdHyper::momentum),
      field("dampening", &SgdHyper::dampening), field("weight_decay", &SgdHyper::weight_decay),
      field("nesterov", &SgdHyper::nesterov),
      field("first", &SgdHyper::first, false,
            "The momentum buffer is uninitialised for these segments (buf = g)."));
  bind_hyper<AdagradHyper>(
      m, "AdagradHyper", "Adagrad hyperparameters of one adagrad_step call.",
      field("lr", &AdagradHyper::lr), field("lr_decay", &AdagradHyper::lr_decay),
      field("weight_decay", &AdagradHyper::weight_decay), field("eps", &AdagradHyper::eps),
      step_field<AdagradHyper>());
  bind_hyper<NadamHyper>(
      m, "NadamHyper", "NAdam hyperparameters of one nadam_step call.",
      field("lr", &NadamHyper::lr), field("beta1", &NadamHyper::beta1),
      field("beta2", &NadamHyper::beta2), field("eps", &NadamHyper::eps),
      field("weight_decay", &NadamHyper::weight_decay),
      field("momentum_decay", &NadamHyper::momentum_decay),
      field("decoupled", &NadamHyper::decoupled, "Decoupled weight decay (p *= 1 - lr wd)."),
      step_field<NadamHyper>(),
      field("mu_product", &NadamHyper::mu_product, 1.0,
            "Product of mu over the steps before this one (float32 value, as torch keeps it)."));
}

}  // namespace sg::bind
