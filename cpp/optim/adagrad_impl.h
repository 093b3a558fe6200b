// Adagrad update over V in PyTorch's single-tensor order: maximize and clip folded into the
// gradient scale, g += wd p, sum += g * g, then p -= clr * g / (sqrt(sum) + eps) with the
// step's clr = lr / (1 + (step - 1) lr_decay) computed by the driver.
#pragma once
#include "optim/optim_common_impl.h"

namespace sg {
namespace {

template <bool WD>
void adagrad_t(float* p, float* sum, const float* g, int64_t n, const AdagradArgs& a) {
  const Prologue<WD> start(a.pre, a.weight_decay);
  const V::R eps = V::set1(a.eps), clr = V::set1(a.clr);
  over_vectors(n, [&](auto full, int64_t i, int64_t k) {
    constexpr bool F = decltype(full)::value;
    const auto [gv, pv] = start(full, g, p, i, k);
    V::R sv = V::fma(gv, gv, ld<F>(sum + i, k));
    st<F>(sum + i, sv, k);
    V::R std_ = V::add(V::sqrt(sv), eps);
    st<F>(p + i, V::fnma(clr, V::div(gv, std_), pv), k);
  });
}

void adagrad(float* p, float* sum, const float* g, int64_t n, const AdagradArgs& a) {
  if (n <= 0) return;
  return a.weight_decay != 0.0f ? adagrad_t<true>(p, sum, g, n, a)
                                : adagrad_t<false>(p, sum, g, n, a);
}

}  // namespace
}  // namespace sg
