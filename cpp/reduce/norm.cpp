// Portable norm drivers: chunking, OpenMP over chunks, and the fixed-order combine that makes
// the result independent of the thread count and of the ISA (see norm.h).
#include "reduce/norm.h"

#include <omp.h>

#include <cmath>
#include <vector>

namespace sg {

namespace {
double chunk_sumsq(const NormKernels& k, const float* x, int64_t n) {
  double lanes[kNormLanes] = {0};
  k.sumsq_lanes(x, n, lanes);
  double s = 0.0;
  for (int l = 0; l < kNormLanes; ++l) s += lanes[l];
  return s;
}
}  // namespace

double sumsq_f32(const float* x, int64_t n) {
  if (n <= 0) return 0.0;
  const NormKernels& k = norm_kernels();
  const int64_t nchunks = (n + kNormChunk - 1) / kNormChunk;
  if (nchunks == 1) return chunk_sumsq(k, x, n);
  thread_local std::vector<double> partial;
  partial.resize(static_cast<size_t>(nchunks));
  double* p = partial.data();
  const bool parallel = nchunks >= 4 && omp_get_max_threads() > 1;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t b = c * kNormChunk;
    p[c] = chunk_sumsq(k, x + b, n - b < kNormChunk ? n - b : kNormChunk);
  }
  double s = 0.0;
  for (int64_t c = 0; c < nchunks; ++c) s += p[c];
  return s;
}

float absmax_f32(const float* x, int64_t n) {
  if (n <= 0) return 0.0f;
  const NormKernels& k = norm_kernels();
  const int64_t nchunks = (n + kNormChunk - 1) / kNormChunk;
  float best = 0.0f;
  bool nan = false;
  const bool parallel = nchunks >= 4 && omp_get_max_threads() > 1;
#pragma omp parallel for schedule(static) if (parallel) reduction(max : best) reduction(|| : nan)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t b = c * kNormChunk;
    bool h = false;
    float m = k.absmax(x + b, n - b < kNormChunk ? n - b : kNormChunk, &h);
    best = m > best ? m : best;
    nan = nan || h;
  }
  return nan ? NAN : best;
}

}  // namespace sg
