// Argument validation for the binding layer: the only gate between Python and the kernels.
// Every failure raises TypeError (wrong type/dtype) or ValueError (wrong shape, layout,
// aliasing, value) naming the function, the argument, what was expected and what came.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace sg::bind {

namespace py = pybind11;

std::string shape_str(const py::array& a);
std::string dtype_str(const py::array& a);

[[noreturn]] void type_error(const std::string& fn, const std::string& msg);
[[noreturn]] void value_error(const std::string& fn, const std::string& msg);

// A float32, C-contiguous, 4-byte aligned ndarray (no conversion: a cast copy would hide
// in-place updates). ndim < 0 accepts any rank.
py::array f32_array(const char* fn, const char* name, const py::handle& obj, int ndim);

// An int32 or int64, C-contiguous, itemsize-aligned ndarray of the given rank.
py::array int_array(const char* fn, const char* name, const py::handle& obj, int ndim);

// Raises unless a's data address is a multiple of its itemsize: the kernels load whole
// elements (a misaligned float load is undefined behaviour), and nothing is copied because
// outputs and in-place buffers must be the caller's own memory.
void require_aligned(const char* fn, const char* name, const py::array& a);

void require_writeable(const char* fn, const char* name, const py::array& a);

// `shape` lists the expected extents; a negative entry accepts anything.
void require_shape(const char* fn, const char* name, const py::array& a,
                   std::initializer_list<int64_t> shape);

// Raises if a and b share any byte. If allow_exact is true, a and b may be the very same
// memory (same pointer, same size): the kernels that accept in-place operation say so.
void require_disjoint(const char* fn, const char* out_name, const py::array& out,
                      const char* in_name, const py::array& in, bool allow_exact = false);

// require_disjoint(out, each input) in order; a null input (an absent optional) is skipped.
void require_disjoint_from(const char* fn, const char* out_name, const py::array& out,
                           std::initializer_list<std::pair<const char*, const py::array*>> ins,
                           bool allow_exact = false);

// Raises unless a has ref's shape: "<name> must have <ref_desc> <ref's shape>, got <a's shape>"
// (ref_desc e.g. "the input's shape" or "the shape of x").
void require_shape_like(const char* fn, const char* name, const py::array& a,
                        const std::string& ref_desc, const py::array& ref);

// "<name> must have the shape of <ref_name> <ref's shape>, got ...".
void require_same_shape(const char* fn, const char* name, const py::array& a,
                        const char* ref_name, const py::array& ref);

// Output array for an elementwise op: a new float32 array shaped like `like` when out_obj is
// None, else `out` checked for like's shape (like_desc names it in the error), writeable, and
// disjoint from each input except for the very same memory (in place).
py::array elementwise_out(const char* fn, const py::array& like, const char* like_desc,
                          const py::handle& out_obj,
                          std::initializer_list<std::pair<const char*, const py::array*>> ins);

// An in-place float32 array of exactly `shape` (a gradient, a running statistic): never
// converted, writeable.
py::array inplace_array(const char* fn, const char* name, const py::handle& obj,
                        std::initializer_list<int64_t> shape);

// An output array: a new float32 array of `shape` when obj is None, else as inplace_array.
py::array out_array(const char* fn, const char* name, const py::handle& obj,
                    std::initializer_list<int64_t> shape);

// An optional float32 vector of shape (n,) (a bias, a per-channel weight): null when obj is
// None, else the array (kept alive in *keep) checked as f32_array and require_shape.
const float* opt_vector(const char* fn, const char* name, const py::handle& obj, int64_t n,
                        py::array* keep);

// A float32 array of exactly (batch, features), any rank accepted up front so that a wrong rank
// reads as a wrong shape: "<name> must have <what> (batch=<batch>, <features_name>=<features>),
// got <shape>" (what e.g. "the output's shape").
py::array batch_matrix(const char* fn, const char* name, const py::handle& obj, const char* what,
                       int64_t batch, const char* features_name, int64_t features);

// The fused epilogue a layer binding takes: "none" -> false, "relu" -> true, else ValueError.
bool relu_epilogue(const char* fn, const std::string& activation);

bool is_none(const py::handle& h);

inline float* f32_ptr(py::array& a) { return static_cast<float*>(a.mutable_data()); }
inline const float* f32_cptr(const py::array& a) { return static_cast<const float*>(a.data()); }

// Allocate a float32 C-contiguous array of the given shape (with the GIL held).
py::array new_f32(std::vector<py::ssize_t> shape);

}  // namespace sg::bind
