// Argument validation helpers (see checks.h).
#include "bindings/checks.h"

#include <algorithm>
#include <cstdint>
#include <sstream>

namespace sg::bind {

std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s << ", ";
    s << a.shape(i);
  }
  if (a.ndim() == 1) s << ",";
  s << ")";
  return s.str();
}

std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

void type_error(const std::string& fn, const std::string& msg) {
  throw py::type_error(fn + ": " + msg);
}
void value_error(const std::string& fn, const std::string& msg) {
  throw py::value_error(fn + ": " + msg);
}

bool is_none(const py::handle& h) { return h.is_none(); }

namespace {
std::string type_name(const py::handle& obj) {
  return py::str(py::type::of(obj).attr("__name__")).cast<std::string>();
}

py::array as_ndarray(const char* fn, const char* name, const py::handle& obj, const char* want) {
  if (!py::isinstance<py::array>(obj)) {
    type_error(fn, std::string(name) + " must be a numpy.ndarray of " + want + ", got " +
                       type_name(obj));
  }
  return py::reinterpret_borrow<py::array>(obj);
}

void check_rank_layout(const char* fn, const char* name, const py::array& a, int ndim,
                       const char* hint) {
  if (ndim >= 0 && a.ndim() != ndim) {
    value_error(fn, std::string(name) + " must be " + std::to_string(ndim) + "-D, got " +
                        std::to_string(a.ndim()) + "-D array of shape " + shape_str(a));
  }
  if (!(a.flags() & py::array::c_style)) {
    value_error(fn, std::string(name) + " must be C-contiguous, got a strided view of shape " +
                        shape_str(a) + " (use " + hint + ")");
  }
}
}  // namespace

py::array f32_array(const char* fn, const char* name, const py::handle& obj, int ndim) {
  py::array a = as_ndarray(fn, name, obj, "float32");
  if (a.dtype().kind() != 'f' || a.itemsize() != 4 || a.dtype().byteorder() == '>') {
    type_error(fn, std::string(name) + " must have dtype float32, got " + dtype_str(a) +
                       " array of shape " + shape_str(a) + " (use x.astype(np.float32))");
  }
  check_rank_layout(fn, name, a, ndim, "np.ascontiguousarray(x)");
  require_aligned(fn, name, a);
  return a;
}

py::array int_array(const char* fn, const char* name, const py::handle& obj, int ndim) {
  py::array a = as_ndarray(fn, name, obj, "int32 or int64");
  const char kind = a.dtype().kind();
  if (kind != 'i' || (a.itemsize() != 4 && a.itemsize() != 8) || a.dtype().byteorder() == '>') {
    type_error(fn, std::string(name) + " must have dtype int32 or int64, got " + dtype_str(a) +
                       " array of shape " + shape_str(a));
  }
  check_rank_layout(fn, name, a, ndim, "np.ascontiguousarray(x)");
  require_aligned(fn, name, a);
  return a;
}

void require_aligned(const char* fn, const char* name, const py::array& a) {
  const auto size = static_cast<uintptr_t>(a.itemsize());
  const uintptr_t rem = reinterpret_cast<uintptr_t>(a.data()) % size;
  if (rem != 0) {
    const std::string s = std::to_string(size);
    value_error(fn, std::string(name) + " must be " + s + "-byte aligned " + dtype_str(a) +
                        " data, got address % " + s + " == " + std::to_string(rem) +
                        " (a view at a byte offset that is not a multiple of " + s +
                        "); pass a copy (np.array(x))");
  }
}

void require_writeable(const char* fn, const char* name, const py::array& a) {
  if (!a.writeable()) {
    value_error(fn, std::string(name) + " must be writeable, got a read-only array of shape " +
                        shape_str(a));
  }
}

void require_shape(const char* fn, const char* name, const py::array& a,
                   std::initializer_list<int64_t> shape) {
  bool ok = static_cast<size_t>(a.ndim()) == shape.size();
  size_t i = 0;
  for (int64_t s : shape) {
    if (!ok) break;
    if (s >= 0 && a.shape(i) != s) ok = false;
    ++i;
  }
  if (ok) return;
  std::ostringstream want;
  want << "(";
  i = 0;
  for (int64_t s : shape) {
    if (i++) want << ", ";
    if (s >= 0) want << s;
    else want << "any";
  }
  if (shape.size() == 1) want << ",";
  want << ")";
  value_error(fn, std::string(name) + " must have shape " + want.str() + ", got " + shape_str(a));
}

void require_disjoint(const char* fn, const char* out_name, const py::array& out,
                      const char* in_name, const py::array& in, bool allow_exact) {
  const auto* o = static_cast<const char*>(out.data());
  const auto* i = static_cast<const char*>(in.data());
  const py::ssize_t on = out.nbytes(), inb = in.nbytes();
  if (on == 0 || inb == 0) return;
  if (allow_exact && o == i && on == inb) return;
  if (o < i + inb && i < o + on) {
    value_error(fn, std::string(out_name) + " must not overlap " + in_name +
                        (allow_exact ? " (except by being the very same array)" : "") +
                        ", got arrays sharing memory");
  }
}

py::array new_f32(std::vector<py::ssize_t> shape) { return py::array_t<float>(shape); }

py::array inplace_array(const char* fn, const char* name, const py::handle& obj,
                        std::initializer_list<int64_t> shape) {
  py::array a = f32_array(fn, name, obj, static_cast<int>(shape.size()));
  require_shape(fn, name, a, shape);
  require_writeable(fn, name, a);
  return a;
}

py::array out_array(const char* fn, const char* name, const py::handle& obj,
                    std::initializer_list<int64_t> shape) {
  if (obj.is_none()) return new_f32(std::vector<py::ssize_t>(shape.begin(), shape.end()));
  return inplace_array(fn, name, obj, shape);
}

bool relu_epilogue(const char* fn, const std::string& activation) {
  if (activation == "none") return false;
  if (activation == "relu") return true;
  value_error(fn, "activation must be 'none' or 'relu', got '" + activation + "'");
}

void require_shape_like(const char* fn, const char* name, const py::array& a,
                        const std::string& ref_desc, const py::array& ref) {
  if (a.ndim() != ref.ndim() || !std::equal(a.shape(), a.shape() + a.ndim(), ref.shape())) {
    value_error(fn, std::string(name) + " must have " + ref_desc + " " + shape_str(ref) +
                        ", got " + shape_str(a));
  }
}

void require_same_shape(const char* fn, const char* name, const py::array& a,
                        const char* ref_name, const py::array& ref) {
  require_shape_like(fn, name, a, std::string("the shape of ") + ref_name, ref);
}

py::array elementwise_out(const char* fn, const py::array& like, const char* like_desc,
                          const py::handle& out_obj,
                          std::initializer_list<std::pair<const char*, const py::array*>> ins) {
  if (out_obj.is_none()) {
    return new_f32(std::vector<py::ssize_t>(like.shape(), like.shape() + like.ndim()));
  }
  py::array out = f32_array(fn, "out", out_obj, -1);
  require_shape_like(fn, "out", out, like_desc, like);
  require_writeable(fn, "out", out);
  require_disjoint_from(fn, "out", out, ins, /*allow_exact=*/true);
  return out;
}

void require_disjoint_from(const char* fn, const char* out_name, const py::array& out,
                           std::initializer_list<std::pair<const char*, const py::array*>> ins,
                           bool allow_exact) {
  for (auto& [name, arr] : ins) {
    if (arr) require_disjoint(fn, out_name, out, name, *arr, allow_exact);
  }
}

const float* opt_vector(const char* fn, const char* name, const py::handle& obj, int64_t n,
                        py::array* keep) {
  if (obj.is_none()) return nullptr;
  *keep = f32_array(fn, name, obj, 1);
  require_shape(fn, name, *keep, {n});
  return f32_cptr(*keep);
}

py::array batch_matrix(const char* fn, const char* name, const py::handle& obj, const char* what,
                       int64_t batch, const char* features_name, int64_t features) {
  py::array a = f32_array(fn, name, obj, -1);
  if (a.ndim() != 2 || a.shape(0) != batch || a.shape(1) != features) {
    value_error(fn, std::string(name) + " must have " + what + " (batch=" + std::to_string(batch) +
                        ", " + features_name + "=" + std::to_string(features) + "), got " +
                        shape_str(a));
  }
  return a;
}

}  // namespace sg::bind
