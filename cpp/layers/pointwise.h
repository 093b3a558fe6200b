// Elementwise layer kernels: residual add and dropout (counter-based mask, no mask memory); the
// losses are in elem_loss.h. Shape legend: n elements, flat.
#pragma once
#include <cstdint>

#include "isa/dispatch_table.h"

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
};

SG_DECLARE_DISPATCH(PointwiseKernels, pointwise_kernels, pointwise_kernels);

// Parallel drivers (fixed chunking: bitwise identical for any thread count).
void add_f32(float* y, const float* a, const float* b, int64_t n);
void dropout_f32(float* y, const float* x, int64_t n, uint64_t seed, uint32_t threshold,
                 float scale);

// dropout_f32's threshold and scale for drop probability p in [0, 1]: keep with probability
// 1 - p, threshold = round(p * 2^32); p == 1 drops all (scale unused, 0).
struct DropoutParams {
  uint32_t threshold;
  float scale;
};
DropoutParams dropout_params(double p);

}  // namespace sg
