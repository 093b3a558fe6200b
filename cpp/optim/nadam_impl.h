// NAdam update over V in PyTorch's single-tensor order: maximize and clip folded into the
// gradient scale, coupled (g += wd p) or decoupled (p *= 1 - lr wd) decay, lerp of m,
// v = b2 v + (1-b2) g^2 (Moments), denom = sqrt(v / bc2) + eps, then the two addcdivs
// p += grad_coef * g / denom and p += avg_coef * m / denom (coefficients from the driver).
#pragma once
#include "optim/optim_common_impl.h"

namespace sg {
namespace {

template <WeightDecay WD>
void nadam_t(float* p, float* m, float* v, const float* g, int64_t n, const NadamArgs& a) {
  const Moments<WD> mo(a.pre, a.moments);
  const V::R bc2 = V::set1(a.bc2), eps = V::set1(a.eps);
  const V::R gc = V::set1(a.grad_coef), ac = V::set1(a.avg_coef);
  over_vectors(n, [&](auto full, int64_t i, int64_t k) {
    constexpr bool F = decltype(full)::value;
    const MomentStep e = mo.step(full, p, m, v, g, i, k);
    V::R denom = V::add(V::sqrt(V::div(e.v, bc2)), eps);
    V::R pv = V::fma(gc, V::div(e.g, denom), e.p);
    st<F>(p + i, V::fma(ac, V::div(e.m, denom), pv), k);
  });
}

void nadam(float* p, float* m, float* v, const float* g, int64_t n, const NadamArgs& a) {
  if (n <= 0) return;
  with_weight_decay(a.moments.wd_mode,
                    [&](auto wd) { nadam_t<decltype(wd)::value>(p, m, v, g, n, a); });
}

}  // namespace
}  // namespace sg
