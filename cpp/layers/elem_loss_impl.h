// Elementwise losses over V: each kind is one function of (input, target[, pos_weight]) giving
// the loss and d loss / d input for V::W elements; one loop applies weight, scale and the sums.
#pragma once
#include <cmath>
#include <cstdint>

#include "layers/elem_loss.h"
#include "reduce/chunked_reduce.h"
#include "simd/vmath.h"

namespace sg {
namespace {

// sign(d) with sign(0) = 0 and sign(NaN) = NaN (d * 0), as torch's l1 gradient.
inline V::R vsign(V::R d) {
  return V::select(V::gt(d, V::zero()), V::set1(1.0f),
                   V::select(V::lt(d, V::zero()), V::set1(-1.0f), V::mul(d, V::zero())));
}

template <ElemLoss K>
inline V::R elem_loss(V::R x, V::R y, V::R pw, float param, V::R* g) {
  const V::R one = V::set1(1.0f);
  if constexpr (K == ElemLoss::kMse) {
    const V::R d = V::sub(x, y);
    *g = V::add(d, d);
    return V::mul(d, d);
  } else if constexpr (K == ElemLoss::kL1) {
    const V::R d = V::sub(x, y);
    *g = vsign(d);
    return V::abs(d);
  } else if constexpr (K == ElemLoss::kSmoothL1) {  // beta = param > 0
    const V::R d = V::sub(x, y), ad = V::abs(d), beta = V::set1(param);
    *g = V::min(one, V::max(V::set1(-1.0f), V::div(d, beta)));
    const V::R quad = V::div(V::mul(V::mul(V::set1(0.5f), d), d), beta);
    return V::select(V::lt(ad, beta), quad, V::sub(ad, V::set1(0.5f * param)));
  } else if constexpr (K == ElemLoss::kHuber) {  // delta = param > 0
    const V::R d = V::sub(x, y), ad = V::abs(d), delta = V::set1(param);
    *g = V::min(delta, V::max(V::set1(-param), d));
    const V::R quad = V::mul(V::mul(V::set1(0.5f), d), d);
    return V::select(V::lt(ad, delta), quad, V::mul(delta, V::sub(ad, V::set1(0.5f * param))));
  } else {  // kBceLogits: loss = (1-y) x + lw (max(-x, 0) + log1p(e^-|x|)), lw = 1 + (pw-1) y
    const V::R e = vexp(V::neg(V::abs(x)));  // in (0, 1]: finite for any finite x
    const V::R sp = vlog1p_unit(e);
    const V::R lw = V::fma(V::sub(pw, one), y, one);
    const V::R r = V::div(one, V::add(one, e));
    const V::R sig = V::select(V::lt(x, V::zero()), V::mul(e, r), r);
    *g = V::fnma(pw, y, V::mul(lw, sig));  // lw sigmoid(x) - pw y
    // (1-y) x + lw max(-x, 0) first: for y = 0, x = -20 it is exactly 0 and the 2e-9 survives.
    const V::R lin = V::fma(lw, V::max(V::neg(x), V::zero()), V::mul(V::sub(one, y), x));
    return V::fma(lw, sp, lin);
  }
}

// BCE on probabilities, scalar (std::log on every path): torch clamps each log at -100 and
// divides the gradient by max(p (1-p), 1e-12).
inline float bce_scalar(float p, float y, float* g) {
  const float lp = std::fmax(std::log(p), -100.0f);
  const float l1p = std::fmax(std::log1p(-p), -100.0f);
  *g = (p - y) / std::fmax((1.0f - p) * p, 1e-12f);
  return (y - 1.0f) * l1p - y * lp;
}

template <ElemLoss K>
void elem_loss_run(const ElemLossArgs& a, int64_t b, int64_t n, double* lanes) {
  constexpr int W = V::W;
  static_assert(kReduceLanes % W == 0, "lanes must be whole vectors");
  const float* x = a.input + b;
  const float* y = a.target + b;
  const float* w = a.weight ? a.weight + b : nullptr;
  const float* pw = a.pos_weight ? a.pos_weight + b : nullptr;
  float* grad = a.grad ? a.grad + b : nullptr;
  float* out = a.loss_out ? a.loss_out + b : nullptr;
  const V::R gs = V::set1(a.grad_scale), one = V::set1(1.0f);
  float tmp[W];
  for (int64_t i = 0; i < n; i += W) {
    const int64_t c = n - i < W ? n - i : W;  // lanes in this step; past c loads read 0
    const bool full = c == W;
    auto ld = [&](const float* p) { return full ? V::load(p + i) : V::load_n(p + i, c); };
    V::R g, l;
    if constexpr (K == ElemLoss::kBce) {
      float xs[W], ys[W], gv[W], lv[W];
      V::store(xs, ld(x));
      V::store(ys, ld(y));
      for (int t = 0; t < W; ++t) lv[t] = bce_scalar(xs[t], ys[t], &gv[t]);
      g = V::load(gv);
      l = V::load(lv);
    } else {
      l = elem_loss<K>(ld(x), ld(y), pw ? ld(pw) : one, a.param, &g);
    }
    if (w) {
      const V::R wv = ld(w);
      l = V::mul(l, wv);
      g = V::mul(g, wv);
    }
    if (grad) {
      const V::R gg = V::mul(g, gs);
      if (full) V::store(grad + i, gg); else V::store_n(grad + i, gg, c);
    }
    if (out) {
      if (full) V::store(out + i, l); else V::store_n(out + i, l, c);
    }
    double* lane = lanes + (i % kReduceLanes);
    if constexpr (K == ElemLoss::kMse) {  // d = g / 2 exactly: the square in double, unrounded
      V::store(tmp, g);
      for (int64_t t = 0; t < c; ++t) {
        const double d = 0.5 * static_cast<double>(tmp[t]);
        lane[t] += d * d;
      }
    } else {
      V::store(tmp, l);
      for (int64_t t = 0; t < c; ++t) lane[t] += tmp[t];
    }
  }
}

void elem_loss_chunk(const ElemLossArgs& a, int64_t b, int64_t n, double* lanes) {
  switch (a.kind) {
    case ElemLoss::kMse: return elem_loss_run<ElemLoss::kMse>(a, b, n, lanes);
    case ElemLoss::kL1: return elem_loss_run<ElemLoss::kL1>(a, b, n, lanes);
    case ElemLoss::kSmoothL1: return elem_loss_run<ElemLoss::kSmoothL1>(a, b, n, lanes);
    case ElemLoss::kHuber: return elem_loss_run<ElemLoss::kHuber>(a, b, n, lanes);
    case ElemLoss::kBce: return elem_loss_run<ElemLoss::kBce>(a, b, n, lanes);
    case ElemLoss::kBceLogits: return elem_loss_run<ElemLoss::kBceLogits>(a, b, n, lanes);
  }
}

}  // namespace
}  // namespace sg
