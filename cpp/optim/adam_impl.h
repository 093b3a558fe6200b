// Adam/AdamW update over V, PyTorch's single-tensor/fused arithmetic order: maximize and clip
// folded into the gradient scale, decay, lerp of m, v = b2 v + (1-b2) g^2 (Moments), amsgrad
// max, then p -= step_size * m / (sqrt(v) / sqrt(bc2) + eps).
#pragma once
#include "optim/optim_common_impl.h"

namespace sg {
namespace {

template <bool AMS, WeightDecay WD>
void adam_t(float* p, float* m, float* v, float* vmax, const float* g, int64_t n,
            const AdamArgs& a) {
  const Moments<WD> mo(a.pre, a.moments);
  const V::R ibc2 = V::set1(a.inv_bc2_sqrt), eps = V::set1(a.eps), ss = V::set1(a.step_size);
  over_vectors(n, [&](auto full, int64_t i, int64_t k) {
    constexpr bool F = decltype(full)::value;
    const MomentStep e = mo.step(full, p, m, v, g, i, k);
    V::R vd = e.v;
    if constexpr (AMS) {
      vd = V::max(ld<F>(vmax + i, k), e.v);
      st<F>(vmax + i, vd, k);
    }
    V::R denom = V::fma(V::sqrt(vd), ibc2, eps);
    st<F>(p + i, V::fnma(ss, V::div(e.m, denom), e.p), k);
  });
}

void adam(float* p, float* m, float* v, float* vmax, const float* g, int64_t n, const AdamArgs& a) {
  if (n <= 0) return;
  with_weight_decay(a.moments.wd_mode, [&](auto wd) {
    constexpr WeightDecay WD = decltype(wd)::value;
    a.amsgrad ? adam_t<true, WD>(p, m, v, vmax, g, n, a) : adam_t<false, WD>(p, m, v, vmax, g, n, a);
  });
}

}  // namespace
}  // namespace sg
