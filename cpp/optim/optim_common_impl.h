// Shared pieces of the optimizer kernels over V: full/masked loads and stores, the gradient
// prologue (clip scale, sign, clamp) and PyTorch's two-form lerp. Included by *_impl.h only.
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

// at::lerp: self + w * (end - self) for w < 0.5, else end - (end - self) * (1 - w).
inline V::R lerp(V::R self, V::R end, bool small, V::R w, V::R rest) {
  V::R d = V::sub(end, self);
  return small ? V::fma(w, d, self) : V::fnma(rest, d, end);
}

}  // namespace
}  // namespace sg
