// Parallel drivers for the elementwise layer kernels: fixed chunks (independent of the thread
// count) and, for MSE, the fixed-order combine of per-chunk double partial sums.
#include "layers/pointwise.h"

#include <omp.h>

#include <vector>

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

double mse_f32(float* grad, const float* pred, const float* target, int64_t n, float grad_scale) {
  if (n <= 0) return 0.0;
  const PointwiseKernels& k = pointwise_kernels();
  const int64_t nchunks = (n + kMseChunk - 1) / kMseChunk;
  std::vector<double> partial(static_cast<size_t>(nchunks), 0.0);
  double* p = partial.data();
  const bool parallel = nchunks >= 4 && omp_get_max_threads() > 1;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t b = c * kMseChunk;
    const int64_t len = n - b < kMseChunk ? n - b : kMseChunk;
    double lanes[kMseLanes] = {0};
    k.mse_chunk(grad ? grad + b : nullptr, pred + b, target + b, len, grad_scale, lanes);
    double s = 0.0;
    for (int l = 0; l < kMseLanes; ++l) s += lanes[l];
    p[c] = s;
  }
  double s = 0.0;
  for (int64_t c = 0; c < nchunks; ++c) s += p[c];
  return s;
}

}  // namespace sg
