// RMSprop update over V in PyTorch's order: v = alpha v + (1-alpha) g^2; centered subtracts the
// lerped grad_avg squared; eps is added outside the sqrt; momentum buf = mu buf + g / avg.
#pragma once
#include "optim/optim_common_impl.h"

namespace sg {
namespace {

template <bool WD, bool CENTERED, bool MOM>
void rmsprop_t(float* p, float* sq, float* gavg, float* buf, const float* g, int64_t n,
               const RmspropArgs& a) {
  const Prologue<WD> start(a.pre, a.weight_decay);
  const Lerp avg_lerp(a.avg_lerp);
  const V::R al = V::set1(a.alpha), c = avg_lerp.w;  // c: 1 - alpha
  const V::R eps = V::set1(a.eps), lr = V::set1(a.lr), mu = V::set1(a.momentum);
  over_vectors(n, [&](auto full, int64_t i, int64_t k) {
    constexpr bool F = decltype(full)::value;
    const auto [gv, pv] = start(full, g, p, i, k);
    V::R sv = V::fma(V::mul(c, gv), gv, V::mul(ld<F>(sq + i, k), al));
    st<F>(sq + i, sv, k);
    V::R avg;
    if constexpr (CENTERED) {
      V::R ga = avg_lerp(ld<F>(gavg + i, k), gv);
      st<F>(gavg + i, ga, k);
      avg = V::sqrt(V::fnma(ga, ga, sv));
    } else {
      avg = V::sqrt(sv);
    }
    avg = V::add(avg, eps);
    if constexpr (MOM) {
      V::R bv = V::add(V::mul(ld<F>(buf + i, k), mu), V::div(gv, avg));
      st<F>(buf + i, bv, k);
      st<F>(p + i, V::fnma(lr, bv, pv), k);
    } else {
      st<F>(p + i, V::fnma(lr, V::div(gv, avg), pv), k);
    }
  });
}

void rmsprop(float* p, float* sq, float* gavg, float* buf, const float* g, int64_t n,
             const RmspropArgs& a) {
  if (n <= 0) return;
  const int key = (a.weight_decay != 0.0f ? 4 : 0) | (a.centered ? 2 : 0) | (a.use_momentum ? 1 : 0);
  switch (key) {
    case 0: return rmsprop_t<false, false, false>(p, sq, gavg, buf, g, n, a);
    case 1: return rmsprop_t<false, false, true>(p, sq, gavg, buf, g, n, a);
    case 2: return rmsprop_t<false, true, false>(p, sq, gavg, buf, g, n, a);
    case 3: return rmsprop_t<false, true, true>(p, sq, gavg, buf, g, n, a);
    case 4: return rmsprop_t<true, false, false>(p, sq, gavg, buf, g, n, a);
    case 5: return rmsprop_t<true, false, true>(p, sq, gavg, buf, g, n, a);
    case 6: return rmsprop_t<true, true, false>(p, sq, gavg, buf, g, n, a);
    default: return rmsprop_t<true, true, true>(p, sq, gavg, buf, g, n, a);
  }
}

}  // namespace
}  // namespace sg
