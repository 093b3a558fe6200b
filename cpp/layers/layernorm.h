// LayerNorm over the trailing dimensions as torch.nn.LayerNorm: a C-contiguous input is viewed
// as (n, d) rows, d the product of normalized_shape; each row is normalised by its own mean
// and biased variance. Shape legend: x, y, dy, dx are (n, d); mean and rstd are (n,); gamma,
// beta, dgamma and dbeta are (d,). Results do not depend on the thread count: each row is one
// thread's, and dgamma/dbeta are column reductions in a fixed order (colreduce_impl.h).
#pragma once
#include <cstdint>

#include "isa/dispatch_table.h"

namespace sg {

struct LayerNormKernels {
  // mean[i] and rstd[i] = 1/sqrt(var + eps) of row i (biased variance, corrected two-pass over
  // the row while it is in L1); y = (x - mean) * rstd * gamma + beta. gamma/beta null: 1 and 0.
  void (*forward)(float* y, float* mean, float* rstd, const float* x, const float* gamma,
                  const float* beta, int64_t n, int64_t d, float eps);
  // From the forward's saved mean/rstd, with g = dy * gamma and xhat = (x - mean) * rstd:
  // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) per row (skipped when dx is null);
  // dgamma = sum_rows dy * xhat and dbeta = sum_rows dy (each skipped when null), written
  // (acc_* = 0) or accumulated (acc_* = 1). The column sums run first, so dx may be dy or x
  // exactly (each row is read whole before its dx is stored).
  void (*backward)(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                   const float* mean, const float* rstd, const float* gamma, int64_t n,
                   int64_t d, float acc_gamma, float acc_beta);
};

SG_DECLARE_DISPATCH(LayerNormKernels, layernorm_kernels, layernorm_kernels);

}  // namespace sg
