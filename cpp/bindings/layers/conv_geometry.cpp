// Binding of cpp/layers/conv_geometry.h: ConvGeometry, built once per layer and input shape
// by the Python layers (nn/conv.py, nn/pooling.py) and handed to every conv, depthwise and
// pooling kernel call, so those calls take one checked struct instead of sixteen ints.
#include <pybind11/pybind11.h>

#include <string>
#include <tuple>

#include "bindings/checks.h"
#include "layers/conv_geometry.h"

namespace sg::bind {

using std::to_string;

namespace {

// Validates the fields and computes oh/ow (torch's rule; ceil_mode: pooling's).
ConvGeometry make_geometry(int64_t n, int64_t h, int64_t w, int64_t c_in, int64_t c_out,
                           int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw,
                           int64_t ph0, int64_t ph1, int64_t pw0, int64_t pw1, int64_t groups,
                           bool ceil_mode) {
  const char* fn = "ConvGeometry";
  auto positive = [&](const char* name, int64_t v, int64_t lo) {
    if (v < lo) {
      value_error(fn, std::string(name) + " must be >= " + to_string(lo) + ", got " +
                          to_string(v));
    }
  };
  positive("n", n, 0);
  positive("h", h, 1);
  positive("w", w, 1);
  positive("c_in", c_in, 1);
  positive("c_out", c_out, 1);
  positive("kh", kh, 1);
  positive("kw", kw, 1);
  positive("sh", sh, 1);
  positive("sw", sw, 1);
  positive("dh", dh, 1);
  positive("dw", dw, 1);
  positive("ph0", ph0, 0);
  positive("ph1", ph1, 0);
  positive("pw0", pw0, 0);
  positive("pw1", pw1, 0);
  positive("groups", groups, 1);
  if (c_in % groups || c_out % groups) {
    value_error(fn, "groups must divide c_in and c_out, got groups=" + to_string(groups) +
                        ", c_in=" + to_string(c_in) + ", c_out=" + to_string(c_out));
  }
  ConvGeometry g{n, h, w, c_in, c_out, groups, kh, kw, sh, sw, dh, dw, ph0, ph1, pw0, pw1, 0, 0};
  g.oh = conv_output_size(h, kh, sh, dh, ph0, ph1, ceil_mode);
  g.ow = conv_output_size(w, kw, sw, dw, pw0, pw1, ceil_mode);
  if (g.oh < 1 || g.ow < 1) {
    value_error(fn, "the output would be " + to_string(g.oh) + "x" + to_string(g.ow) +
                        " for input " + to_string(h) + "x" + to_string(w) + ", window " +
                        to_string(kh) + "x" + to_string(kw) + " (dilation " + to_string(dh) +
                        "x" + to_string(dw) + "), padding (" + to_string(ph0) + "+" +
                        to_string(ph1) + ", " + to_string(pw0) + "+" + to_string(pw1) +
                        "); it must be at least 1x1");
  }
  return g;
}

using GeometryState = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                 int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                 int64_t, int64_t, int64_t, int64_t>;

// Pickling (copy.deepcopy / pickle of a layer that caches its geometry): every field, in the
// struct's order. Unpickling validates like the constructor and accepts the stored oh/ow only
// where they are what the window gives (floor, or pooling's ceil_mode): a pickle is data, and
// a wrong output size would send the kernels outside their arrays.
GeometryState geometry_state(const ConvGeometry& g) {
  return {g.n,  g.h,  g.w,  g.c_in, g.c_out, g.groups, g.kh,  g.kw,  g.sh,
          g.sw, g.dh, g.dw, g.ph0,  g.ph1,   g.pw0,    g.pw1, g.oh,  g.ow};
}

ConvGeometry geometry_from_state(const GeometryState& s) {
  auto [n, h, w, c_in, c_out, groups, kh, kw, sh, sw, dh, dw, ph0, ph1, pw0, pw1, oh, ow] = s;
  for (bool ceil_mode : {false, true}) {
    if (conv_output_size(h, kh, sh, dh, ph0, ph1, ceil_mode) == oh &&
        conv_output_size(w, kw, sw, dw, pw0, pw1, ceil_mode) == ow) {
      return make_geometry(n, h, w, c_in, c_out, kh, kw, sh, sw, dh, dw, ph0, ph1, pw0, pw1,
                           groups, ceil_mode);
    }
  }
  value_error("ConvGeometry", "unpickled output size " + to_string(oh) + "x" + to_string(ow) +
                                  " is not what the window gives for input " + to_string(h) +
                                  "x" + to_string(w));
}

}  // namespace

void register_conv_geometry(py::module_& m) {
  using py::arg;
  py::class_<ConvGeometry>(
      m, "ConvGeometry",
      "One conv/pool call's geometry over a channels-last batch: input (n, h, w, c_in), output "
      "(n, oh, ow, c_out), window (kh, kw), stride, dilation and padding before/after (ph0, "
      "ph1, pw0, pw1). oh/ow follow torch's rule (ceil_mode: pooling's). Raises ValueError "
      "naming the field for a non-positive size, negative padding, groups not dividing the "
      "channels, or an output smaller than 1.")
      .def(py::init(&make_geometry),
           py::kw_only(), arg("n"), arg("h"), arg("w"), arg("c_in"), arg("c_out"), arg("kh"),
           arg("kw"), arg("sh") = 1, arg("sw") = 1, arg("dh") = 1, arg("dw") = 1,
           arg("ph0") = 0, arg("ph1") = 0, arg("pw0") = 0, arg("pw1") = 0, arg("groups") = 1,
           arg("ceil_mode") = false)
#define SG_RO(f) .def_readonly(#f, &ConvGeometry::f)
      SG_RO(n) SG_RO(h) SG_RO(w) SG_RO(c_in) SG_RO(c_out) SG_RO(groups) SG_RO(kh) SG_RO(kw)
      SG_RO(sh) SG_RO(sw) SG_RO(dh) SG_RO(dw) SG_RO(ph0) SG_RO(ph1) SG_RO(pw0) SG_RO(pw1)
      SG_RO(oh) SG_RO(ow)
#undef SG_RO
      .def(py::pickle(&geometry_state, &geometry_from_state))
      .def("__repr__", [](const ConvGeometry& g) {
        return "ConvGeometry(n=" + to_string(g.n) + ", in=" + to_string(g.h) + "x" +
               to_string(g.w) + "x" + to_string(g.c_in) + ", out=" + to_string(g.oh) + "x" +
               to_string(g.ow) + "x" + to_string(g.c_out) + ", window=" + to_string(g.kh) +
               "x" + to_string(g.kw) + ", stride=" + to_string(g.sh) + "x" + to_string(g.sw) +
               ", groups=" + to_string(g.groups) + ")";
      });
}

}  // namespace sg::bind
