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

// One row. label >= 0 for a class index, < 0 for the soft target row t. Returns the row's
// loss; writes the scaled gradient when d is non-null (d may be x itself: every x[j] is read
// before d[j] is written). For a label, with W = sum_c w[c], the row loss is
// A lse - (1-eps) w[y] x[y] - eps/C sum_c w[c] x[c] and the gradient A p - (1-eps) w[y] onehot
// - eps/C w, A = (1-eps) w[y] + eps/C W; for soft targets A = sum_c w[c] q[c] and the
// coefficients w[c] q[c].
double xent_row(float* d, const float* x, int64_t label, const float* t, const float* w,
                double wsum, int64_t C, float eps, float scale) {
  const int W = V::W;
  const bool soft = label < 0;
  const float xl = soft ? 0.0f : x[label];  // read before d (which may be x itself) is written
  const double lw = soft ? 0.0 : (w ? w[label] : 1.0);
  int64_t j = 0;
  V::R vmax = V::set1(-INFINITY);
  for (; j + W <= C; j += W) vmax = V::max(vmax, V::load(x + j));
  float mx = V::reduce_max(vmax);
  for (; j < C; ++j) mx = x[j] > mx ? x[j] : mx;

  const float keep = 1.0f - eps, spread = eps / static_cast<float>(C);
  const V::R vm = V::set1(mx), one = V::set1(1.0f), vkeep = V::set1(keep), vspread = V::set1(spread);
  // coef(j): the soft target's w q, or the label case's w (1 when unweighted).
  auto coef = [&](int64_t j0, int64_t n) {
    const bool full = n == W;
    const V::R wv = w ? (full ? V::load(w + j0) : V::load_n(w + j0, n)) : one;
    if (!soft) return wv;
    const V::R tv = full ? V::load(t + j0) : V::load_n(t + j0, n);
    return V::mul(wv, V::fma(tv, vkeep, vspread));
  };
  const bool dot_w = soft || w;  // whether the x sum needs coefficients
  V::R vsum = V::zero(), vxs = V::zero(), vqs = V::zero();
  j = 0;
  for (; j + W <= C; j += W) {
    V::R xv = V::load(x + j);
    const V::R cv = dot_w ? coef(j, W) : one;
    V::R e = vexp(V::sub(xv, vm));
    if (d) V::store(d + j, e);
    vsum = V::add(vsum, e);
    vxs = dot_w ? V::fma(cv, xv, vxs) : V::add(vxs, xv);
    vqs = V::add(vqs, cv);
  }
  double sum = V::reduce_add(vsum), xsum = V::reduce_add(vxs), qsum = V::reduce_add(vqs);
  if (j < C) {
    const int64_t n = C - j;
    V::R xv = V::load_n(x + j, n);
    const V::R cv = dot_w ? coef(j, n) : one;
    V::R e = vexp(V::sub(xv, vm));
    // Lanes past n read as x = 0: only the first n lanes enter the sums.
    float te[V::W], tc[V::W];
    V::store(te, e);
    V::store(tc, cv);
    for (int64_t s = 0; s < n; ++s) {
      sum += te[s];
      xsum += static_cast<double>(tc[s]) * x[j + s];
      qsum += tc[s];
      if (d) d[j + s] = te[s];
    }
  }
  const double lse = mx + std::log(sum);
  // A: the weight of softmax in the gradient (1 exactly when unweighted with labels).
  const double keep_d = 1.0 - eps, spread_d = static_cast<double>(eps) / C;
  const double A = soft ? qsum : (w ? keep_d * lw + spread_d * wsum : 1.0);
  double loss;
  if (soft) {
    loss = qsum * lse - xsum;
  } else {
    loss = A * lse - keep_d * lw * xl;
    if (eps != 0.0f) loss -= spread_d * xsum;
  }
  if (d) {
    const double e_label = soft ? 0.0 : d[label];
    const V::R a = V::set1(static_cast<float>(scale * A / sum));
    const V::R vscale = V::set1(scale);
    // the per-class offset: scale * (soft ? w q : eps/C w)
    auto offset = [&](int64_t j0, int64_t n) {
      if (soft) return V::mul(vscale, coef(j0, n));
      return V::mul(V::set1(scale * spread), coef(j0, n));
    };
    j = 0;
    for (; j + W <= C; j += W) V::store(d + j, V::sub(V::mul(V::load(d + j), a), offset(j, W)));
    if (j < C) {
      const int64_t n = C - j;
      V::store_n(d + j, V::sub(V::mul(V::load_n(d + j, n), a), offset(j, n)), n);
    }
    // The label's entry in one double expression, one rounding: unweighted, q_label =
    // 1 - eps + eps/C is 1 exactly for C = 1, so the gradient is exactly 0 there (as torch's).
    if (!soft) {
      d[label] = static_cast<float>(e_label * (scale * A / sum) -
                                    scale * lw * (keep_d + spread_d));
    }
  }
  return loss;
}

constexpr int64_t kXentParallelMin = 1 << 15;

// Runs row(i) -> loss over the batch (row-parallel when large), stores row losses if asked and
// returns their sum in row order.
template <class Row>
double xent_rows(const XentArgs& a, Row row) {
  const int64_t B = a.batch, C = a.classes;
  thread_local std::vector<double> row_loss;
  row_loss.resize(static_cast<size_t>(B));
  double* rl = row_loss.data();
  const bool parallel = B * C >= kXentParallelMin && B > 1 && num_threads() > 1;
#pragma omp parallel for schedule(static) if (parallel) num_threads(num_threads())
  for (int64_t i = 0; i < B; ++i) rl[i] = row(i);
  double total = 0.0;
  for (int64_t i = 0; i < B; ++i) {
    total += rl[i];
    if (a.row_loss) a.row_loss[i] = static_cast<float>(rl[i]);
  }
  return total;
}

double class_weight_sum(const XentArgs& a) {
  double s = 0.0;
  if (a.class_weight) for (int64_t c = 0; c < a.classes; ++c) s += a.class_weight[c];
  return s;
}

template <class Label>
double softmax_xent(const XentArgs& a, const Label* labels) {
  const int64_t C = a.classes;
  const double wsum = class_weight_sum(a);
  return xent_rows(a, [&](int64_t i) {
    float* d = a.dlogits ? a.dlogits + i * C : nullptr;
    const int64_t y = labels[i];
    if (y == a.ignore_index) {
      if (d) for (int64_t j = 0; j < C; ++j) d[j] = 0.0f;
      return 0.0;
    }
    return xent_row(d, a.logits + i * C, y, nullptr, a.class_weight, wsum, C, a.label_smoothing,
                    a.grad_scale);
  });
}

double softmax_xent_soft(const XentArgs& a) {
  const int64_t C = a.classes;
  return xent_rows(a, [&](int64_t i) {
    return xent_row(a.dlogits ? a.dlogits + i * C : nullptr, a.logits + i * C, -1,
                    a.soft_target + i * C, a.class_weight, 0.0, C, a.label_smoothing, a.grad_scale);
  });
}

}  // namespace
}  // namespace sg
