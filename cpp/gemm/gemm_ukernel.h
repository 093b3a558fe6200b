// The per-ISA GEMM microkernel table: tile shape, blocking, and the kernel that multiplies one
// packed MR x kc A micropanel by one packed kc x NR B micropanel and applies the epilogue.
#pragma once
#include <cstdint>

#include "isa/dispatch.h"

namespace sg {

struct GemmEpilogue {
  float alpha;
  float beta;         // 0: write C without reading it
  const float* bias;  // at this tile's first column, or null
  bool relu;
};

// c is (mr, nr) with row stride ldc; mr <= MR, nr <= NR. a: kc x MR packed k-major,
// b: kc x NR packed k-major (zero-padded past the edges).
using GemmUkernelFn = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                               int64_t mr, int64_t nr, const GemmEpilogue& ep);

struct GemmUkernel {
  int mr, nr;      // register tile
  int mc, kc, nc;  // cache blocking (mc % mr == 0, nc % nr == 0)
  GemmUkernelFn fn;
};

extern const GemmUkernel f32_gemm_ukernel__generic;
#if defined(SG_X86)
extern const GemmUkernel f32_gemm_ukernel__avx2;
extern const GemmUkernel f32_gemm_ukernel__avx512;
#endif

inline const GemmUkernel& gemm_ukernel() {
#if defined(SG_X86)
  static const GemmUkernel* const table[kNumIsa] = {
      &f32_gemm_ukernel__generic, &f32_gemm_ukernel__avx2, &f32_gemm_ukernel__avx512};
#else
  static const GemmUkernel* const table[kNumIsa] = {&f32_gemm_ukernel__generic, nullptr, nullptr};
#endif
  return pick(table);
}

}  // namespace sg
