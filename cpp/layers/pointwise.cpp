// Parallel drivers for the elementwise layer kernels: fixed chunks (independent of the thread
// count).
#include "layers/pointwise.h"

#include <cmath>

#include "common/parallel.h"

namespace sg {

void add_f32(float* y, const float* a, const float* b, int64_t n) {
  const PointwiseKernels& k = pointwise_kernels();
  parallel_chunks(n, 1 << 14, [&](int64_t lo, int64_t hi) { k.add(y + lo, a + lo, b + lo, hi - lo); });
}

void dropout_f32(float* y, const float* x, int64_t n, uint64_t seed, uint32_t threshold,
                 float scale) {
  const PointwiseKernels& k = pointwise_kernels();
  // The counter is the global index, so chunking never changes the mask.
  parallel_chunks(n, 1 << 14, [&](int64_t lo, int64_t hi) {
    k.dropout(y + lo, x + lo, hi - lo, lo, seed, threshold, scale);
  });
}

DropoutParams dropout_params(double p) {
  const double t = std::nearbyint(p * 4294967296.0);
  const bool all = p >= 1.0;
  return {all ? 0u : static_cast<uint32_t>(t > 4294967295.0 ? 4294967295.0 : t),
          all ? 0.0f : static_cast<float>(1.0 / (1.0 - p))};
}

}  // namespace sg
