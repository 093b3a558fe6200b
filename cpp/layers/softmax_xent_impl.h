// Softmax cross-entropy over V. Stable for any finite logits: every exp sees x - max(x) <= 0.
// Row losses are summed in row order in double, so the loss does not depend on threads.
#pragma once
#include <omp.h>

#include "common/parallel.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "layers/softmax_xent.h"
#include "simd/vmath.h"

namespace sg {
namespace {

// One row: returns its loss; writes the scaled gradient when d is non-null.
template <class Label>
double xent_row(float* d, const float* x, Label label, int64_t C, float eps, float scale) {
  const int W = V::W;
  const float xl = x[label];  // read before d (which may be x itself) is written
  int64_t j = 0;
  V::R vmax = V::set1(-INFINITY);
  for (; j + W <= C; j += W) vmax = V::max(vmax, V::load(x + j));
  float mx = V::reduce_max(vmax);
  for (; j < C; ++j) mx = x[j] > mx ? x[j] : mx;

  const V::R vm = V::set1(mx);
  V::R vsum = V::zero(), vxs = V::zero();
  j = 0;
  for (; j + W <= C; j += W) {
    V::R xv = V::load(x + j);
    V::R e = vexp(V::sub(xv, vm));
    if (d) V::store(d + j, e);
    vsum = V::add(vsum, e);
    vxs = V::add(vxs, xv);
  }
  double sum = V::reduce_add(vsum), xsum = V::reduce_add(vxs);
  if (j < C) {
    const int64_t w = C - j;
    V::R xv = V::load_n(x + j, w);
    V::R e = vexp(V::sub(xv, vm));
    // Lanes past w read as x = 0: only the first w lanes enter the sums.
    float tmp[V::W];
    V::store(tmp, e);
    for (int64_t t = 0; t < w; ++t) {
      sum += tmp[t];
      xsum += x[j + t];
      if (d) d[j + t] = tmp[t];
    }
  }
  const double lse = mx + std::log(sum);
  double loss = lse - (1.0 - eps) * xl;
  if (eps != 0.0f) loss -= eps / static_cast<double>(C) * xsum;
  if (d) {
    const double e_label = d[label];
    const V::R a = V::set1(static_cast<float>(scale / sum));
    const float off = static_cast<float>(static_cast<double>(scale) * eps / C);
    const V::R voff = V::set1(off);
    j = 0;
    for (; j + W <= C; j += W) V::store(d + j, V::sub(V::mul(V::load(d + j), a), voff));
    if (j < C) {
      const int64_t w = C - j;
      V::store_n(d + j, V::sub(V::mul(V::load_n(d + j, w), a), voff), w);
    }
    // The label's entry in one double expression, one rounding: q_label = 1 - eps + eps/C is
    // 1 exactly for C = 1, so the gradient is exactly 0 there (as torch's).
    d[label] = static_cast<float>(e_label * (scale / sum) -
                                  scale * ((1.0 - eps) + static_cast<double>(eps) / C));
  }
  return loss;
}

template <class Label>
double softmax_xent(float* d, const float* x, const Label* labels, int64_t B, int64_t C, float eps,
                    float scale) {
  thread_local std::vector<double> row_loss;
  row_loss.resize(static_cast<size_t>(B));
  double* rl = row_loss.data();
  const bool parallel = B * C >= (1 << 15) && B > 1 && num_threads() > 1;
#pragma omp parallel for schedule(static) if (parallel) num_threads(num_threads())
  for (int64_t i = 0; i < B; ++i) {
    rl[i] = xent_row(d ? d + i * C : nullptr, x + i * C, labels[i], C, eps, scale);
  }
  double total = 0.0;
  for (int64_t i = 0; i < B; ++i) total += rl[i];
  return total;
}

}  // namespace
}  // namespace sg
