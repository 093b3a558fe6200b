// Parallel drivers for the elementwise layer kernels: fixed chunks (independent of the thread
// count).
#include "layers/pointwise.h"

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

}  // namespace sg
