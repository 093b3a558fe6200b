// Elementwise layer kernels: residual add, dropout (counter-based mask, no mask memory) and the
// MSE loss with its gradient. Shape legend: n elements, flat.
#pragma once
#include <cstdint>

#include "isa/dispatch_table.h"
#include "reduce/chunked_reduce.h"

namespace sg {

struct PointwiseKernels {
  // y = a + b. y may alias a or b.
  void (*add)(float* y, const float* a, const float* b, int64_t n);
  // y[i] = keep(i) ? x[i] * scale : 0 with keep(i) = hash(seed, i) >= threshold (a 32-bit
  // counter-based hash, so the mask depends only on (seed, i): forward and backward call this
  // with the same seed, and any thread count or ISA draws the same mask). y may alias x.
  // Element i of this call has global counter base + i.
  void (*dropout)(float* y, const float* x, int64_t n, int64_t base, uint64_t seed,
                  uint32_t threshold, float scale);
  // One chunk (n <= kReduceChunk) of MSE: d = pred - target; grad = d * grad_scale (skipped when
  // grad is null); lanes[i % 16] += d*d in double.
  void (*mse_chunk)(float* grad, const float* pred, const float* target, int64_t n,
                    float grad_scale, double* lanes);
};

SG_DECLARE_DISPATCH(PointwiseKernels, pointwise_kernels, pointwise_kernels);

// Parallel drivers (fixed chunking: bitwise identical for any thread count).
void add_f32(float* y, const float* a, const float* b, int64_t n);
void dropout_f32(float* y, const float* x, int64_t n, uint64_t seed, uint32_t threshold,
                 float scale);
// Returns sum (pred - target)^2 (double, deterministic); writes grad = grad_scale (pred - target).
double mse_f32(float* grad, const float* pred, const float* target, int64_t n, float grad_scale);

}  // namespace sg
