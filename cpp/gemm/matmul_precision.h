// The matmul precision (sg.set_matmul_precision) and the bf16 kernel path. The precision is a
// process-wide flag every GEMM call reads once: "highest" multiplies fp32 as it is, "bf16"
// rounds both inputs to bf16 while packing them and accumulates in fp32 (storage stays fp32).
// bf16 runs on one of three paths, best first: AMX-BF16 tiles (tdpbf16ps), AVX512-BF16
// (vdpbf16ps), or the reference path (rounded inputs, the ISA's fp32 microkernels), which runs
// on every CPU. STEADYGRAD_BF16_PATH lowers the path at import.
#pragma once
#include <string>

#include "gemm/gemm_ukernel.h"

namespace sg {

enum class MatmulPrecision : int { highest = 0, bf16 = 1 };
MatmulPrecision matmul_precision();
void set_matmul_precision(MatmulPrecision p);
const char* matmul_precision_name(MatmulPrecision p);

enum class Bf16Path : int { reference = 0, avx512bf16 = 1, amx = 2 };
constexpr int kNumBf16Path = 3;
const char* bf16_path_name(Bf16Path p);
// Built, and the CPU/OS can run it (AMX: Linux granted the tile state, asked once per process).
bool bf16_path_supported(Bf16Path p);
Bf16Path best_bf16_path();
Bf16Path active_bf16_path();  // as chosen (best, or lowered by the variable / _set_bf16_path)
// The path a bf16 GEMM takes now: the active one, or the reference path when the active ISA is
// not AVX-512 (the native kernels use the AVX-512 table's tile and packers).
Bf16Path effective_bf16_path();
// "reference" | "avx512bf16" | "amx"; false with `error` filled for an unknown or unsupported
// name (the path is then unchanged).
bool set_bf16_path(const std::string& name, std::string* error);
// At import: the best path, lowered by STEADYGRAD_BF16_PATH (the reference path before).
bool init_bf16_path_from_env(std::string* error);

// A native bf16 microkernel. It reads panels the driver converts from the fp32 packers'
// micropanels of the same MR x NR tile (convert_a/convert_b: one micropanel of kc k steps,
// rounding with bf16.h), `depth(kc)` floats per panel row (A) or column (B), and applies the
// same epilogue as the fp32 kernels.
struct Bf16Ukernel {
  int mr, nr;
  int64_t (*depth)(int64_t kc);
  void (*convert_a)(const float* src, int64_t kc, float* dst);
  void (*convert_b)(const float* src, int64_t kc, float* dst);
  void (*fn)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t mr,
             int64_t nr, const GemmEpilogue& ep);
};

// The native kernel a bf16 GEMM with the fp32 table `uk` runs, or null for the reference path.
const Bf16Ukernel* bf16_native_ukernel(const GemmUkernel& uk);

}  // namespace sg
