// Bindings for cpp/layout/layout.h: channels-first <-> channels-last copies of rank-3 (n, c, l)
// and rank-4 (n, c, h, w) float32 arrays. Everything is checked before out is touched.
#include <cstdint>
#include <string>
#include <vector>

#include "bindings/checks.h"
#include "layout/layout.h"

namespace sg::bind {
namespace {

// to_last: x (n, c, *s) -> out (n, *s, c); else x (n, *s, c) -> out (n, c, *s).
py::array convert(const char* fn, py::handle x_obj, py::handle out_obj, bool to_last) {
  py::array x = f32_array(fn, "x", x_obj, -1);
  if (x.ndim() != 3 && x.ndim() != 4) {
    value_error(fn, std::string("x must have rank 3 (") + (to_last ? "n, c, l" : "n, l, c") +
                        ") or 4 (" + (to_last ? "n, c, h, w" : "n, h, w, c") + "), got shape " +
                        shape_str(x));
  }
  const int nd = static_cast<int>(x.ndim());
  std::vector<py::ssize_t> want(nd);
  if (to_last) {
    want[0] = x.shape(0);
    for (int d = 2; d < nd; ++d) want[d - 1] = x.shape(d);
    want[nd - 1] = x.shape(1);
  } else {
    want[0] = x.shape(0);
    want[1] = x.shape(nd - 1);
    for (int d = 1; d < nd - 1; ++d) want[d + 1] = x.shape(d);
  }
  py::array y;
  if (is_none(out_obj)) {
    y = new_f32(want);
  } else {
    y = f32_array(fn, "out", out_obj, -1);
    bool ok = y.ndim() == nd;
    for (int d = 0; ok && d < nd; ++d) ok = y.shape(d) == want[d];
    if (!ok) {
      std::string s = "(";
      for (int d = 0; d < nd; ++d) s += std::to_string(want[d]) + (d + 1 < nd ? ", " : ")");
      value_error(fn, std::string("out must have shape ") + s + " (x " + shape_str(x) + " in " +
                          (to_last ? "channels-last" : "channels-first") + " order), got " +
                          shape_str(y));
    }
    require_writeable(fn, "out", y);
    require_disjoint(fn, "out", y, "x", x);
  }
  const int64_t n = x.shape(0);
  int64_t s = 1;
  for (int d = 2; d < nd; ++d) s *= x.shape(to_last ? d : d - 1);
  const int64_t c = x.shape(to_last ? 1 : nd - 1);
  const float* xp = f32_cptr(x);
  float* yp = f32_ptr(y);
  {
    py::gil_scoped_release release;
    // channels-first image is a (c, s) matrix, channels-last a (s, c) one
    if (to_last) {
      batched_transpose_f32(yp, xp, n, c, s);
    } else {
      batched_transpose_f32(yp, xp, n, s, c);
    }
  }
  return y;
}

py::array to_channels_last(py::handle x, py::handle out) {
  return convert("to_channels_last", x, out, true);
}
py::array to_channels_first(py::handle x, py::handle out) {
  return convert("to_channels_first", x, out, false);
}

}  // namespace

void register_layout(py::module_& m) {
  m.def("to_channels_last", &to_channels_last, py::arg("x"), py::arg("out") = py::none(),
        "Copy channels-first x (n, c, l) / (n, c, h, w) into channels-last out (n, l, c) / "
        "(n, h, w, c) (allocated when None). A copy: bitwise the same on every path.");
  m.def("to_channels_first", &to_channels_first, py::arg("x"), py::arg("out") = py::none(),
        "Copy channels-last x (n, l, c) / (n, h, w, c) into channels-first out (n, c, l) / "
        "(n, c, h, w) (allocated when None).");
}

}  // namespace sg::bind
