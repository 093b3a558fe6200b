// BatchNorm1d over (batch, channels) as torch.nn.BatchNorm1d: biased batch variance to
// normalise, unbiased variance into running_var. Shape legend: x, y, dx, dy are (n, c);
// every per-channel array is (c,). Reductions are deterministic (see colreduce_impl.h).
#pragma once
#include <cstdint>

#include "isa/dispatch_table.h"

namespace sg {

struct BatchNormKernels {
  // Training: batch mean and biased variance per channel; save_mean/save_invstd receive them
  // (invstd = 1/sqrt(var + eps)); y = (x - mean) * invstd * gamma + beta. If running_mean is
  // non-null, running = (1 - momentum) running + momentum batch (unbiased var, n > 1).
  // gamma/beta null means affine=False (1 and 0). relu: store max(0, y) instead (torch's
  // relu: NaN stays NaN), so a following ReLU needs no pass or buffer of its own.
  void (*forward_train)(float* y, float* save_mean, float* save_invstd, float* running_mean,
                        float* running_var, const float* x, const float* gamma,
                        const float* beta, int64_t n, int64_t c, float eps, float momentum,
                        bool relu);
  // Inference on given statistics: save_mean = mean, save_invstd = 1/sqrt(var + eps), y as above.
  void (*forward_eval)(float* y, float* save_mean, float* save_invstd, const float* x,
                       const float* mean, const float* var, const float* gamma,
                       const float* beta, int64_t n, int64_t c, float eps, bool relu);
  // Backward from the saved statistics. batch_stats: the statistics came from this batch
  // (training), so dx carries their gradient; otherwise dx = dy * gamma * invstd.
  // dgamma/dbeta (null when affine=False) are written (acc_* = 0) or accumulated (acc_* = 1);
  // dx is skipped when null. relu: the forward ran with relu, and dy is first masked as
  // torch's relu backward (0 where y <= 0, dy where y > 0 or y is NaN), with y the forward's
  // output when non-null, else recomputed as the forward does from x, the saved statistics,
  // gamma and beta (null: 0). dx may be dy, x or y exactly (each element is written after
  // its last read).
  // sums (null: reduce these n rows): the (2, c) sums of dy and of dy * xhat over a batch of
  // `count` rows of which these n are a part (SyncBatchNorm: every rank's rows, summed across
  // ranks); dx then takes the statistics' gradient from them (batch_stats must be true) and no
  // reduction runs here. dgamma/dbeta, when non-null, receive the given sums.
  void (*backward)(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                   const float* y, const float* save_mean, const float* save_invstd,
                   const float* gamma, const float* beta, int64_t n, int64_t c,
                   bool batch_stats, float acc_gamma, float acc_beta, bool relu,
                   const float* sums, int64_t count);
};

SG_DECLARE_DISPATCH(BatchNormKernels, batchnorm_kernels, batchnorm_kernels);

}  // namespace sg
