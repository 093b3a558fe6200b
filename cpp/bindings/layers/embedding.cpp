// Bindings for cpp/layers/embedding.h: the Embedding layer's forward (a row gather) and backward
// (a scatter-add into the weight's gradient), one call each. Every argument and every index is
// checked before any output is touched, so a rejected call changes nothing.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "bindings/checks.h"
#include "layers/embedding.h"

namespace sg::bind {
namespace {

using std::to_string;

// "indices[1, 3]": where flat position i lies in an array of a's shape.
std::string position_str(const py::array& a, int64_t i) {
  std::vector<int64_t> at(static_cast<size_t>(a.ndim()));
  for (py::ssize_t d = a.ndim() - 1; d >= 0; --d) {
    at[static_cast<size_t>(d)] = i % a.shape(d);
    i /= a.shape(d);
  }
  std::string s = "indices[";
  for (size_t d = 0; d < at.size(); ++d) s += (d ? ", " : "") + to_string(at[d]);
  return s + (at.empty() ? "()]" : "]");
}

// The shape of the rows an index array selects: indices.shape + (dim,).
std::vector<py::ssize_t> rows_shape(const py::array& ix, int64_t dim) {
  std::vector<py::ssize_t> s(ix.shape(), ix.shape() + ix.ndim());
  s.push_back(dim);
  return s;
}

std::string dims_str(const std::vector<py::ssize_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

// A float32 array of exactly `shape` ("<name> must have <desc> <shape>, got ...").
py::array rows_array(const char* fn, const char* name, const py::handle& obj,
                     const std::vector<py::ssize_t>& shape, const char* desc) {
  py::array a = f32_array(fn, name, obj, -1);
  if (static_cast<size_t>(a.ndim()) != shape.size() ||
      !std::equal(shape.begin(), shape.end(), a.shape())) {
    value_error(fn, std::string(name) + " must have " + desc + " " + dims_str(shape) + ", got " +
                        shape_str(a));
  }
  return a;
}

// Runs find-then-kernel without the GIL: kernel() only when every index lies in [0, num), else
// an IndexError naming the first one out of range and its position.
template <class Kernel>
void checked_run(const char* fn, const py::array& ix, int64_t num, Kernel kernel) {
  const int64_t n = ix.size();
  const bool i64 = ix.itemsize() == 8;
  int64_t bad;
  {
    py::gil_scoped_release release;
    bad = i64 ? embedding_find_bad(static_cast<const int64_t*>(ix.data()), n, num)
              : embedding_find_bad(static_cast<const int32_t*>(ix.data()), n, num);
    if (bad < 0) kernel(i64);
  }
  if (bad >= 0) {
    const int64_t v = i64 ? static_cast<const int64_t*>(ix.data())[bad]
                          : static_cast<const int32_t*>(ix.data())[bad];
    throw py::index_error(std::string(fn) + ": " + position_str(ix, bad) + " = " + to_string(v) +
                          " is out of range for num_embeddings=" + to_string(num) +
                          " (expected 0 <= index < " + to_string(num) + ")");
  }
}

py::array embedding_forward(py::handle idx_obj, py::handle w_obj, py::handle out_obj) {
  const char* fn = "embedding_forward";
  py::array w = f32_array(fn, "weight", w_obj, 2);
  const int64_t num = w.shape(0), dim = w.shape(1);
  py::array ix = int_array(fn, "indices", idx_obj, -1);
  const std::vector<py::ssize_t> shape = rows_shape(ix, dim);
  py::array y;
  if (out_obj.is_none()) {
    y = new_f32(shape);
  } else {
    y = rows_array(fn, "out", out_obj, shape, "the shape indices.shape + (embedding_dim,)");
    require_writeable(fn, "out", y);
    require_disjoint_from(fn, "out", y, {{"weight", &w}, {"indices", &ix}});
  }
  const float* wp = f32_cptr(w);
  float* yp = f32_ptr(y);
  checked_run(fn, ix, num, [&](bool i64) {
    if (i64) embedding_forward_f32(yp, wp, static_cast<const int64_t*>(ix.data()), ix.size(), dim);
    else embedding_forward_f32(yp, wp, static_cast<const int32_t*>(ix.data()), ix.size(), dim);
  });
  return y;
}

void embedding_backward(py::handle dy_obj, py::handle idx_obj, py::handle dw_obj,
                        py::handle padding_obj, bool accumulate, py::handle scratch_obj) {
  const char* fn = "embedding_backward";
  py::array dw = f32_array(fn, "grad_weight", dw_obj, 2);
  require_writeable(fn, "grad_weight", dw);
  const int64_t num = dw.shape(0), dim = dw.shape(1);
  py::array ix = int_array(fn, "indices", idx_obj, -1);
  const int64_t n = ix.size();
  constexpr int64_t kMax = int64_t{1} << 32;  // the backward's sort keys hold row and position
  if (n >= kMax || num > kMax) {
    value_error(fn, "at most 2^32 - 1 indices and 2^32 rows, got " + to_string(n) +
                        " indices and num_embeddings=" + to_string(num));
  }
  py::array dy = rows_array(fn, "grad_output", dy_obj, rows_shape(ix, dim),
                            "the output's shape indices.shape + (embedding_dim,)");
  int64_t pad = -1;
  if (!padding_obj.is_none()) {
    pad = padding_obj.cast<int64_t>();
    if (pad < -num || pad >= num) {
      value_error(fn, "padding_idx must be within num_embeddings=" + to_string(num) + " ([" +
                          to_string(-num) + ", " + to_string(num) + ")), got " + to_string(pad));
    }
    if (pad < 0) pad += num;
  }
  require_disjoint_from(fn, "grad_weight", dw, {{"grad_output", &dy}, {"indices", &ix}});
  std::vector<uint64_t> own;
  uint64_t* sp;
  if (scratch_obj.is_none()) {
    own.resize(static_cast<size_t>(2 * n));
    sp = own.data();
  } else {
    py::array s = int_array(fn, "scratch", scratch_obj, 1);
    if (s.itemsize() != 8 || s.size() < 2 * n) {
      value_error(fn, "scratch must be an int64 array of at least 2 * indices.size = " +
                          to_string(2 * n) + " elements, got " + dtype_str(s) + " " +
                          shape_str(s));
    }
    require_writeable(fn, "scratch", s);
    require_disjoint_from(fn, "scratch", s,
                          {{"grad_weight", &dw}, {"grad_output", &dy}, {"indices", &ix}});
    sp = static_cast<uint64_t*>(s.mutable_data());
  }
  float* dwp = f32_ptr(dw);
  const float* dyp = f32_cptr(dy);
  checked_run(fn, ix, num, [&](bool i64) {
    if (i64) {
      embedding_backward_f32(dwp, dyp, static_cast<const int64_t*>(ix.data()), n, num, dim, pad,
                             accumulate, sp);
    } else {
      embedding_backward_f32(dwp, dyp, static_cast<const int32_t*>(ix.data()), n, num, dim, pad,
                             accumulate, sp);
    }
  });
}

}  // namespace

void register_embedding(py::module_& m) {
  m.def("embedding_forward", &embedding_forward, py::arg("indices"), py::arg("weight"),
        py::kw_only(), py::arg("out") = py::none(),
        "weight[indices]: indices int32/int64 of any shape, each in [0, num_embeddings), weight "
        "(num_embeddings, embedding_dim); returns indices.shape + (embedding_dim,). An index out "
        "of range raises IndexError naming it and its position (out untouched).");
  m.def("embedding_backward", &embedding_backward, py::arg("grad_output"), py::arg("indices"),
        py::arg("grad_weight"), py::kw_only(), py::arg("padding_idx") = py::none(),
        py::arg("accumulate") = false, py::arg("scratch") = py::none(),
        "grad_weight[r] (+)= the sum of grad_output[i] over the positions i with indices[i] == r, "
        "in position order (deterministic for any thread count), for every row but padding_idx. "
        "accumulate=False writes the whole of grad_weight (unindexed rows zero) without assuming "
        "what it held; True adds to the indexed rows only. scratch: an int64 work array of at "
        "least 2 * indices.size elements (None: allocated per call).");
}

}  // namespace sg::bind
