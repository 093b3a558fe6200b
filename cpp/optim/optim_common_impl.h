// Shared pieces of the optimizer kernels over V: full/masked loads and stores, the gradient
// prologue (clip scale, sign, clamp), PyTorch's two-form lerp, the weight-decay dispatch and
// the moment update Adam and NAdam share. Included by *_impl.h only.
#pragma once
#include <cstdint>
#include <type_traits>

#include "optim/optim_kernels.h"

namespace sg {
namespace {

// A tail is processed with masked loads/stores through the same vector arithmetic as the body,
// so every element sees identical operations wherever a thread's range happens to end.
template <bool FULL>
inline V::R ld(const float* p, int64_t k) {
  if constexpr (FULL) {
    (void)k;
    return V::load(p);
  } else {
    return V::load_n(p, k);
  }
}
template <bool FULL>
inline void st(float* p, V::R x, int64_t k) {
  if constexpr (FULL) {
    (void)k;
    V::store(p, x);
  } else {
    V::store_n(p, x, k);
  }
}

// Calls body(std::true_type / std::false_type, i, count) over [0, n) in vectors of V::W.
template <class Body>
inline void over_vectors(int64_t n, Body body) {
  int64_t i = 0;
  for (; i + 2 * V::W <= n; i += 2 * V::W) {
    body(std::true_type{}, i, V::W);
    body(std::true_type{}, i + V::W, V::W);
  }
  for (; i + V::W <= n; i += V::W) body(std::true_type{}, i, V::W);
  if (i < n) body(std::false_type{}, i, n - i);
}

struct Pre {
  V::R scale, lo, hi;
  explicit Pre(const GradPre& p)
      : scale(V::set1(p.grad_scale)), lo(V::set1(-p.clip_value)), hi(V::set1(p.clip_value)) {}
  // max/min return their second operand on NaN (x86 order, mirrored by vec_generic), so a NaN
  // gradient stays NaN as it does under torch.clamp.
  inline V::R operator()(V::R g) const { return V::min(hi, V::max(lo, V::mul(g, scale))); }
};

// An element vector's gradient and parameter as every update starts with them.
struct GradParam {
  V::R g, p;
};

// Loads g through the prologue and p, and applies coupled weight decay (g += wd p) when
// COUPLED_WD.
template <bool COUPLED_WD>
struct Prologue {
  Pre pre;
  V::R wd;
  Prologue(const GradPre& gp, float weight_decay) : pre(gp), wd(V::set1(weight_decay)) {}
  // full: std::true_type (k == V::W) or std::false_type (a masked tail of k), as over_vectors.
  template <class Full>
  inline GradParam operator()(Full, const float* g, const float* p, int64_t i, int64_t k) const {
    constexpr bool F = Full::value;
    V::R gv = pre(ld<F>(g + i, k));
    V::R pv = ld<F>(p + i, k);
    if constexpr (COUPLED_WD) gv = V::fma(pv, wd, gv);
    return {gv, pv};
  }
};

// at::lerp(self, end, w): self + w * (end - self) for w < 0.5, else end - (end - self) * (1 - w).
struct Lerp {
  V::R w, rest;
  bool small;
  explicit Lerp(const LerpArgs& a) : w(V::set1(a.weight)), rest(V::set1(a.rest)), small(a.small) {}
  inline V::R operator()(V::R self, V::R end) const {
    V::R d = V::sub(end, self);
    return small ? V::fma(w, d, self) : V::fnma(rest, d, end);
  }
};

// Calls body(std::integral_constant<WeightDecay, mode>{}): one instantiation per mode.
template <class Body>
inline void with_weight_decay(WeightDecay mode, Body body) {
  using W = WeightDecay;
  switch (mode) {
    case W::none: return body(std::integral_constant<W, W::none>{});
    case W::coupled: return body(std::integral_constant<W, W::coupled>{});
    case W::decoupled: return body(std::integral_constant<W, W::decoupled>{});
  }
}

// One element vector after the moment update (MomentArgs): the gradient (prologue and coupled
// decay applied), the parameter (decoupled decay applied, not yet stored) and the new moments.
struct MomentStep {
  V::R g, p, m, v;
};

// The start Adam and NAdam share: load g and p, decay, update and store m and v.
template <WeightDecay WD>
struct Moments {
  Prologue<WD == WeightDecay::coupled> start;
  V::R decay, b2, c2;
  Lerp m_lerp;
  Moments(const GradPre& gp, const MomentArgs& a)
      : start(gp, a.weight_decay), decay(V::set1(a.decay_factor)), b2(V::set1(a.beta2)),
        c2(V::set1(a.one_minus_beta2)), m_lerp(a.m_lerp) {}
  template <class Full>  // as Prologue's
  inline MomentStep step(Full full, const float* p, float* m, float* v, const float* g,
                         int64_t i, int64_t k) const {
    constexpr bool F = Full::value;
    auto [gv, pv] = start(full, g, p, i, k);
    if constexpr (WD == WeightDecay::decoupled) pv = V::mul(pv, decay);
    V::R mv = m_lerp(ld<F>(m + i, k), gv);
    V::R vv = V::fma(V::mul(c2, gv), gv, V::mul(ld<F>(v + i, k), b2));
    st<F>(m + i, mv, k);
    st<F>(v + i, vv, k);
    return {gv, pv, mv, vv};
  }
};

}  // namespace
}  // namespace sg
