// Bindings for cpp/gemm/gemm.h: sg.ops.gemm (validate, allocate the output with the GIL held,
// release the GIL around the kernel) and the private probes of its paths and scratch sizes.
#include <string>

#include "bindings/checks.h"
#include "gemm/gemm.h"
#include "isa/dispatch.h"

namespace sg::bind {
namespace {

const char* tf(bool b) { return b ? "True" : "False"; }

py::array gemm(py::handle a_obj, py::handle b_obj, bool trans_a, bool trans_b, py::handle out_obj,
               double alpha, double beta, py::handle bias_obj, py::handle act_obj) {
  const char* fn = "gemm";
  py::array a = f32_array(fn, "a", a_obj, 2);
  py::array b = f32_array(fn, "b", b_obj, 2);
  const int64_t m = trans_a ? a.shape(1) : a.shape(0);
  const int64_t k = trans_a ? a.shape(0) : a.shape(1);
  const int64_t bk = trans_b ? b.shape(1) : b.shape(0);
  const int64_t n = trans_b ? b.shape(0) : b.shape(1);
  if (bk != k) {
    value_error(fn, "b has shape " + shape_str(b) + " but trans_b=" + tf(trans_b) + " needs " +
                        (trans_b ? "(n, k=" + std::to_string(k) + ")"
                                 : "(k=" + std::to_string(k) + ", n)") +
                        " to match a of shape " + shape_str(a) + " with trans_a=" + tf(trans_a));
  }
  Activation act = Activation::none;
  if (!act_obj.is_none()) {
    if (!py::isinstance<py::str>(act_obj)) {
      type_error(fn, "activation must be None or 'relu', got " +
                         py::repr(act_obj).cast<std::string>());
    }
    std::string s = act_obj.cast<std::string>();
    if (s != "relu") value_error(fn, "activation must be None or 'relu', got '" + s + "'");
    act = Activation::relu;
  }
  const float* bias = nullptr;
  py::array bias_arr;
  if (!bias_obj.is_none()) {
    bias_arr = f32_array(fn, "bias", bias_obj, 1);
    if (bias_arr.shape(0) != n) {
      value_error(fn, "bias must have shape (n=" + std::to_string(n) + ",), got " +
                          shape_str(bias_arr));
    }
    bias = f32_cptr(bias_arr);
  }
  py::array out;
  if (out_obj.is_none()) {
    if (beta != 0.0) {
      value_error(fn, "beta=" + std::to_string(beta) + " reads out, so out must be given");
    }
    out = new_f32({m, n});
  } else {
    out = f32_array(fn, "out", out_obj, 2);
    require_shape(fn, "out", out, {m, n});
    require_writeable(fn, "out", out);
    require_disjoint_from(fn, "out", out, {{"a", &a}, {"b", &b}, {"bias", bias ? &bias_arr : nullptr}});
  }
  const float* ap = f32_cptr(a);
  const float* bp = f32_cptr(b);
  float* cp = f32_ptr(out);
  const int64_t lda = a.shape(1), ldb = b.shape(1);
  {
    py::gil_scoped_release release;
    gemm_f32(trans_a, trans_b, m, n, k, static_cast<float>(alpha), ap, lda, bp, ldb,
             static_cast<float>(beta), cp, n, bias, act);
  }
  return out;
}

py::dict gemm_workspace_bytes(int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b,
                              int64_t threads) {
  const char* fn = "_gemm_workspace_bytes";
  if (m < 0 || n < 0 || k < 0) {
    value_error(fn, "m, n, k must be >= 0, got (" + std::to_string(m) + ", " + std::to_string(n) +
                        ", " + std::to_string(k) + ")");
  }
  if (threads < 1) value_error(fn, "threads must be >= 1, got " + std::to_string(threads));
  (void)trans_b;  // B is always packed: its buffer sizes do not depend on its layout
  // lda of a contiguous A, as the gemm binding and the layers pass it
  const GemmWorkspace w = gemm_workspace(trans_a, m, n, k, trans_a ? m : k, threads);
  py::dict d;
  d["threads"] = w.threads;
  d["b_shared"] = w.b_shared_bytes;
  d["a"] = w.a_bytes;
  d["b_own"] = w.b_own_bytes;
  d["total"] = w.b_shared_bytes + w.threads * (w.a_bytes + w.b_own_bytes);
  return d;
}

py::dict gemm_constants_dict() {
  const GemmConstants g = gemm_constants();
  auto blocking = [](int64_t mc, int64_t kc, int64_t nc) {
    py::dict b;
    b["mc"] = mc;
    b["kc"] = kc;
    b["nc"] = nc;
    return b;
  };
  py::dict d;
  d["isa"] = isa_name(active_isa());
  d["mr"] = g.mr;
  d["nr"] = g.nr;
  d["packed"] = blocking(g.packed_mc, g.packed_kc, g.packed_nc);
  d["sup"] = blocking(g.sup_mc, g.sup_kc, g.sup_nc);
  d["parallel_min_macs"] = g.parallel_min_macs;
  d["sup_max_rows"] = g.sup_max_rows;
  d["m_split_min_tiles_per_thread"] = g.m_split_min_tiles_per_thread;
  return d;
}

}  // namespace

void register_gemm(py::module_& m) {
  // noconvert: trans_a=None (or any object with __bool__) must not silently mean False.
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::kw_only(),
        py::arg("trans_a").noconvert() = false, py::arg("trans_b").noconvert() = false, py::arg("out") = py::none(), py::arg("alpha") = 1.0,
        py::arg("beta") = 0.0, py::arg("bias") = py::none(), py::arg("activation") = py::none(),
        R"doc(C = activation(alpha * op(a) @ op(b) + beta * out + bias), float32, row-major.

op(a) is a.T when trans_a else a, (m, k); op(b) likewise, (k, n). beta == 0 writes `out`
without reading it (NaN or garbage there cannot leak). `bias` has shape (n,), broadcast over
rows. activation is None or 'relu', fused into the store. Returns `out` (allocated when None).
Bitwise-identical results for any thread count. Under sg.set_matmul_precision("bf16") a and
b are rounded to bfloat16 as they are packed and the products accumulate in float32.)doc");
  m.def("_gemm_uses_sup", &gemm_uses_sup, py::arg("trans_a"), py::arg("m"), py::arg("lda"),
        "Private: True when gemm reads A in place (small-matrix path) for these shapes.");
  m.def("_gemm_constants", &gemm_constants_dict,
        R"doc(Private: the active ISA path's GEMM constants, for tests and memory accounting.

A dict: 'isa', the register tile 'mr' x 'nr', the blocking {'mc', 'kc', 'nc'} of the 'packed'
and 'sup' (A read in place) paths, and the driver's shape rules: 'parallel_min_macs' (m*n*k
below it runs on one thread), 'sup_max_rows' (see _gemm_uses_sup) and
'm_split_min_tiles_per_thread' (a team splits M when ceil(m / mr) >= it * threads, else N).)doc");
  m.def("_gemm_workspace_bytes", &gemm_workspace_bytes, py::arg("m"), py::arg("n"), py::arg("k"),
        py::arg("trans_a") = false, py::arg("trans_b") = false, py::arg("threads") = 1,
        R"doc(Private: bytes of thread-local scratch one gemm call grows, for contiguous operands.

A dict: 'threads' (team size the call runs with: 1 below the parallel cut), 'b_shared'
(calling thread), 'a' and 'b_own' (each team member), 'total' for this call alone. The buffers
are reused across calls, so a sequence of calls needs the max of each, not the sum.)doc");
}

}  // namespace sg::bind
