// NAdam update over V in PyTorch's single-tensor order: maximize and clip folded into the
// gradient scale, coupled (g += wd p) or decoupled (p *= 1 - lr wd) decay, lerp of m,
// v = b2 v + (1-b2) g^2, denom = sqrt(v / bc2) + eps, then the two addcdivs
// p += grad_coef * g / denom and p += avg_coef * m / denom (coefficients from the driver).
#pragma once
#include "optim/optim_common_impl.h"

namespace sg {
namespace {

template <WeightDecay WD>
void nadam_t(float* p, float* m, float* v, const float* g, int64_t n, const NadamArgs& a) {
  const Pre pre(a.pre);
  const V::R wd = V::set1(a.weight_decay), decay = V::set1(a.decay_factor);
  const V::R w1 = V::set1(a.lerp_weight), r1 = V::set1(a.lerp_rest);
  const V::R b2 = V::set1(a.beta2), c2 = V::set1(a.one_minus_beta2);
  const V::R bc2 = V::set1(a.bc2), eps = V::set1(a.eps);
  const V::R gc = V::set1(a.grad_coef), ac = V::set1(a.avg_coef);
  const bool small = a.lerp_small;
  over_vectors(n, [&](auto full, int64_t i, int64_t k) {
    constexpr bool F = decltype(full)::value;
    V::R gv = pre(ld<F>(g + i, k));
    V::R pv = ld<F>(p + i, k);
    if constexpr (WD == WeightDecay::coupled) gv = V::fma(pv, wd, gv);
    if constexpr (WD == WeightDecay::decoupled) pv = V::mul(pv, decay);
    V::R mv = lerp(ld<F>(m + i, k), gv, small, w1, r1);
    V::R vv = V::fma(V::mul(c2, gv), gv, V::mul(ld<F>(v + i, k), b2));
    st<F>(m + i, mv, k);
    st<F>(v + i, vv, k);
    V::R denom = V::add(V::sqrt(V::div(vv, bc2)), eps);
    pv = V::fma(gc, V::div(gv, denom), pv);
    st<F>(p + i, V::fma(ac, V::div(mv, denom), pv), k);
  });
}

void nadam(float* p, float* m, float* v, const float* g, int64_t n, const NadamArgs& a) {
  if (n <= 0) return;
  switch (a.wd_mode) {
    case WeightDecay::none: return nadam_t<WeightDecay::none>(p, m, v, g, n, a);
    case WeightDecay::coupled: return nadam_t<WeightDecay::coupled>(p, m, v, g, n, a);
    case WeightDecay::decoupled: return nadam_t<WeightDecay::decoupled>(p, m, v, g, n, a);
  }
}

}  // namespace
}  // namespace sg
