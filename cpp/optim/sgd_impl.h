// SGD update over V in PyTorch's order: g += wd p; buf = g on first use, else
// buf = mu buf + (1 - dampening) g; nesterov g += mu buf, else g = buf; p -= lr g.
// Also the standalone gradient scale+clamp used by clip_grad_norm_ / clip_grad_value_.
#pragma once
#include "optim/optim_common_impl.h"

namespace sg {
namespace {

template <bool WD, bool MOM, bool FIRST, bool NESTEROV>
void sgd_t(float* p, float* buf, const float* g, int64_t n, const SgdArgs& a) {
  const Prologue<WD> start(a.pre, a.weight_decay);
  const V::R mu = V::set1(a.momentum), omd = V::set1(a.one_minus_dampening), lr = V::set1(a.lr);
  over_vectors(n, [&](auto full, int64_t i, int64_t k) {
    constexpr bool F = decltype(full)::value;
    auto [gv, pv] = start(full, g, p, i, k);
    if constexpr (MOM) {
      V::R bv = FIRST ? gv : V::fma(gv, omd, V::mul(ld<F>(buf + i, k), mu));
      st<F>(buf + i, bv, k);
      gv = NESTEROV ? V::fma(bv, mu, gv) : bv;
    }
    st<F>(p + i, V::fnma(lr, gv, pv), k);
  });
}

template <bool WD>
void sgd_wd(float* p, float* buf, const float* g, int64_t n, const SgdArgs& a) {
  if (a.momentum == 0.0f) return sgd_t<WD, false, false, false>(p, buf, g, n, a);
  if (a.first) {
    return a.nesterov ? sgd_t<WD, true, true, true>(p, buf, g, n, a)
                      : sgd_t<WD, true, true, false>(p, buf, g, n, a);
  }
  return a.nesterov ? sgd_t<WD, true, false, true>(p, buf, g, n, a)
                    : sgd_t<WD, true, false, false>(p, buf, g, n, a);
}

void sgd(float* p, float* buf, const float* g, int64_t n, const SgdArgs& a) {
  if (n <= 0) return;
  if (a.weight_decay != 0.0f) return sgd_wd<true>(p, buf, g, n, a);
  sgd_wd<false>(p, buf, g, n, a);
}

void scale_clamp(float* g, int64_t n, const GradPre& gp) {
  if (n <= 0) return;
  const Pre pre(gp);
  over_vectors(n, [&](auto full, int64_t i, int64_t k) {
    constexpr bool F = decltype(full)::value;
    st<F>(g + i, pre(ld<F>(g + i, k)), k);
  });
}

}  // namespace
}  // namespace sg
