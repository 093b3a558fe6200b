// Norms of a float32 buffer: sum of squares (for L2) and max |x| (for inf). Bitwise-identical
// for every thread count and every ISA path: fixed 8192-element chunks, 16 double lanes per
// chunk (lane = index mod 16, in index order), lanes and chunks combined in a fixed order.
#pragma once
#include <cstdint>

#include "isa/dispatch_table.h"
#include "reduce/chunked_reduce.h"

namespace sg {

struct NormKernels {
  // lanes[l] += x[i]^2 for i in [0, n) with i % 16 == l, n <= kReduceChunk, squares in double.
  void (*sumsq_lanes)(const float* x, int64_t n, double* lanes);
  // max |x[i]| ignoring NaN; *has_nan set when any element is NaN.
  float (*absmax)(const float* x, int64_t n, bool* has_nan);
};

SG_DECLARE_DISPATCH(NormKernels, norm_kernels, norm_kernels);

// One chunk's partial (n <= kReduceChunk), as every driver combines it: the sum of squares with
// the lanes summed in order, and max |x| in double (NaN if any element is NaN).
double sumsq_chunk(const float* x, int64_t n);
double absmax_chunk(const float* x, int64_t n);
// acc = max(acc, p), where a NaN p makes acc NaN for good (the inf-norm combine).
void max_or_nan(double* acc, double p);

// Deterministic sum of squares of x[0..n) (double). Non-finite input gives a non-finite result.
double sumsq_f32(const float* x, int64_t n);
// max |x|; NaN if any element is NaN; 0 for n == 0.
float absmax_f32(const float* x, int64_t n);

}  // namespace sg
