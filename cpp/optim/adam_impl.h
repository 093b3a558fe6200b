// Adam/AdamW update over V, PyTorch's single-tensor/fused arithmetic order: maximize and clip
// folded into the gradient scale, decay, lerp of m, v = b2 v + (1-b2) g^2, amsgrad max, then
// p -= step_size * m / (sqrt(v) / sqrt(bc2) + eps).
#pragma once
#include "optim/optim_common_impl.h"

namespace sg {
namespace {

template <bool AMS, WeightDecay WD>
void adam_t(float* p, float* m, float* v, float* vmax, const float* g, int64_t n,
            const AdamArgs& a) {
  const Pre pre(a.pre);
  const V::R wd = V::set1(a.weight_decay), decay = V::set1(a.decay_factor);
  const V::R w1 = V::set1(a.lerp_weight), r1 = V::set1(a.lerp_rest);
  const V::R b2 = V::set1(a.beta2), c2 = V::set1(a.one_minus_beta2);
  const V::R ibc2 = V::set1(a.inv_bc2_sqrt), eps = V::set1(a.eps), ss = V::set1(a.step_size);
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
    V::R vd = vv;
    if constexpr (AMS) {
      vd = V::max(ld<F>(vmax + i, k), vv);
      st<F>(vmax + i, vd, k);
    }
    V::R denom = V::fma(V::sqrt(vd), ibc2, eps);
    st<F>(p + i, V::fnma(ss, V::div(mv, denom), pv), k);
  });
}

void adam(float* p, float* m, float* v, float* vmax, const float* g, int64_t n, const AdamArgs& a) {
  if (n <= 0) return;
  switch (a.wd_mode) {
    case WeightDecay::none:
      return a.amsgrad ? adam_t<true, WeightDecay::none>(p, m, v, vmax, g, n, a)
                       : adam_t<false, WeightDecay::none>(p, m, v, vmax, g, n, a);
    case WeightDecay::coupled:
      return a.amsgrad ? adam_t<true, WeightDecay::coupled>(p, m, v, vmax, g, n, a)
                       : adam_t<false, WeightDecay::coupled>(p, m, v, vmax, g, n, a);
    case WeightDecay::decoupled:
      return a.amsgrad ? adam_t<true, WeightDecay::decoupled>(p, m, v, vmax, g, n, a)
                       : adam_t<false, WeightDecay::decoupled>(p, m, v, vmax, g, n, a);
  }
}

}  // namespace
}  // namespace sg
