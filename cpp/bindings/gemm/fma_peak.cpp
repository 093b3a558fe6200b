// Binding for cpp/gemm/fma_peak.h: the single-thread FMA throughput probe the GEMM benchmark
// reports efficiency against.
#include <string>

#include "bindings/checks.h"
#include "gemm/fma_peak.h"
#include "isa/dispatch.h"

namespace sg::bind {
namespace {

double fma_peak_gflops(const std::string& isa_name, double seconds) {
  const char* fn = "_fma_peak_gflops";
  Isa isa;
  if (isa_name == "generic") isa = Isa::generic;
  else if (isa_name == "avx2") isa = Isa::avx2;
  else if (isa_name == "avx512") isa = Isa::avx512;
  else value_error(fn, "isa must be 'generic', 'avx2' or 'avx512', got '" + isa_name + "'");
  if (!isa_supported(isa)) value_error(fn, "isa '" + isa_name + "' is not supported by this CPU/OS");
  if (!(seconds > 0.0 && seconds <= 10.0)) {
    value_error(fn, "seconds must be in (0, 10], got " + std::to_string(seconds));
  }
  py::gil_scoped_release release;
  return fma_peak(isa)(seconds);
}

}  // namespace

void register_fma_peak(py::module_& m) {
  m.def("_fma_peak_gflops", &fma_peak_gflops, py::arg("isa"), py::arg("seconds") = 0.2,
        R"doc(Single-thread FMA throughput of one ISA path in GFLOP/s, measured for `seconds`.

Private: the GEMM benchmark reports efficiency against it. On 'generic' an FMA is a multiply
then an add.)doc");
}

}  // namespace sg::bind
