// Norms of a float32 buffer: sum of squares (for L2) and max |x| (for inf). Bitwise-identical
// for every thread count and every ISA path: fixed 8192-element chunks, 16 double lanes per
// chunk (lane = index mod 16, in index order), lanes and chunks combined in a fixed order.
#pragma once
#include <cstdint>

#include "isa/dispatch.h"

namespace sg {

constexpr int64_t kNormChunk = 8192;
constexpr int kNormLanes = 16;

struct NormKernels {
  // lanes[l] += x[i]^2 for i in [0, n) with i % 16 == l, n <= kNormChunk, squares in double.
  void (*sumsq_lanes)(const float* x, int64_t n, double* lanes);
  // max |x[i]| ignoring NaN; *has_nan set when any element is NaN.
  float (*absmax)(const float* x, int64_t n, bool* has_nan);
};

extern const NormKernels norm_kernels__generic;
#if defined(SG_X86)
extern const NormKernels norm_kernels__avx2;
extern const NormKernels norm_kernels__avx512;
#endif

inline const NormKernels& norm_kernels() {
#if defined(SG_X86)
  static const NormKernels* const table[kNumIsa] = {&norm_kernels__generic, &norm_kernels__avx2,
                                                    &norm_kernels__avx512};
#else
  static const NormKernels* const table[kNumIsa] = {&norm_kernels__generic, nullptr, nullptr};
#endif
  return pick(table);
}

// Deterministic sum of squares of x[0..n) (double). Non-finite input gives a non-finite result.
double sumsq_f32(const float* x, int64_t n);
// max |x|; NaN if any element is NaN; 0 for n == 0.
float absmax_f32(const float* x, int64_t n);

}  // namespace sg
