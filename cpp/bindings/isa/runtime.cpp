// Bindings for the runtime controls: the ISA path (cpp/isa/: dispatch.h, cpu_features.h),
// the OpenMP thread count and what cpu_info() reports of both, fork-awareness included.
#include <omp.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>

#include "bindings/checks.h"
#include "common/fork_guard.h"
#include "common/parallel.h"
#include "gemm/matmul_precision.h"
#include "isa/cpu_features.h"
#include "isa/dispatch.h"

namespace sg::bind {
namespace {

// The names of the enum values 0 .. n-1 that `supported` accepts, in order.
template <class E>
py::list supported_names(int n, bool (*supported)(E), const char* (*name)(E)) {
  py::list out;
  for (int i = 0; i < n; ++i) {
    if (supported(static_cast<E>(i))) out.append(name(static_cast<E>(i)));
  }
  return out;
}

py::dict cpu_info() {
  py::dict d;
  d["isa"] = sg::isa_name(sg::active_isa());
  d["isa_best"] = sg::isa_name(sg::best_isa());
  d["isa_supported"] = supported_names(sg::kNumIsa, &sg::isa_supported, &sg::isa_name);
  d["bf16_path"] = sg::bf16_path_name(sg::effective_bf16_path());
  d["bf16_path_best"] = sg::bf16_path_name(sg::best_bf16_path());
  d["bf16_paths_supported"] =
      supported_names(sg::kNumBf16Path, &sg::bf16_path_supported, &sg::bf16_path_name);
  d["matmul_precision"] = sg::matmul_precision_name(sg::matmul_precision());
  d["threads"] = sg::num_threads();
  d["forked_child"] = sg::in_forked_child();
  d["cores"] = omp_get_num_procs();
  d["cpu"] = std::string(sg::cpu_model_name());
  d["compiler"] = SG_COMPILER;
  d["openmp"] = _OPENMP;
  d["version"] = SG_VERSION;
  return d;
}

// Accepts any integer (Python int, numpy integer: anything with __index__) but not bool.
void set_num_threads(py::handle n) {
  const std::string type = py::str(py::type::of(n).attr("__name__")).cast<std::string>();
  PyObject* index = (type == "bool" || type == "bool_") ? nullptr : PyNumber_Index(n.ptr());
  if (!index) {
    PyErr_Clear();
    throw py::type_error("set_num_threads: n must be an int >= 1, got " + type);
  }
  const py::int_ v = py::reinterpret_steal<py::int_>(index);
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
  if (overflow || x < 1 || x > 4096) {
    throw py::value_error("set_num_threads: n must be an int in [1, 4096], got " +
                          py::str(v).cast<std::string>());
  }
  if (x > 1 && sg::in_forked_child()) {
    // libgomp's pool is broken in a forked child: a team of more than 1 would hang.
    // (std::runtime_error reaches Python as RuntimeError.)
    throw std::runtime_error(
        "set_num_threads: this process was forked (os.fork or a multiprocessing 'fork' "
        "worker) and OpenMP's thread pool does not survive fork, so steadygrad runs on 1 "
        "thread here; got n=" + py::str(v).cast<std::string>() +
        ". For multi-thread workers use multiprocessing.get_context('spawn') or "
        "'forkserver'.");
  }
  sg::set_num_threads(static_cast<int>(x));
}

void set_isa(const std::string& name) {
  std::string err;
  if (!sg::set_active_isa(name, &err)) throw py::value_error("set_isa: " + err);
}

}  // namespace

void register_runtime(py::module_& m) {
  m.def("cpu_info", &cpu_info,
        "Return a dict: isa (in use), isa_best, isa_supported, bf16_path (the path a bf16 GEMM "
        "takes now: 'amx', 'avx512bf16' or 'reference'), bf16_path_best, bf16_paths_supported, "
        "matmul_precision ('highest' or 'bf16'), threads (in use), forked_child "
        "(True in a fork()ed child, which runs on 1 thread), cores, cpu, compiler, openmp, "
        "version.");
  m.def("set_num_threads", &set_num_threads, py::arg("n"),
        "Set the number of OpenMP threads the kernels use (default: OMP_NUM_THREADS or all cores). "
        "In a fork()ed child only 1 is allowed (RuntimeError otherwise): OpenMP's thread pool "
        "does not survive fork.");
  m.def("get_num_threads", []() { return sg::num_threads(); },
        "Number of OpenMP threads the kernels use.");
  m.def("set_isa", &set_isa, py::arg("name"),
        "Select the kernel path: 'generic', 'avx2' or 'avx512'. Raises ValueError for an unknown "
        "name or a path this CPU/OS cannot run. STEADYGRAD_ISA sets it at import.");
  m.def("get_isa", []() { return std::string(sg::isa_name(sg::active_isa())); },
        "The kernel path in use.");
}

}  // namespace sg::bind
