// Activation kernels over V. Included once per ISA translation unit after vec_*.h.
// GELU matches PyTorch: exact uses Phi(x) = (1 + erf(x/sqrt2))/2; 'tanh' uses
// 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))). SiLU is x sigmoid(x); ELU is x for x > 0, else
// alpha expm1(x); Softplus is x where beta x > threshold (torch's linear region), else
// log1p(exp(beta x)) / beta, computed as (max(z, 0) + log1p(exp(-|z|))) / beta, z = beta x,
// which never overflows.
#pragma once
#include <cstdint>
#include <limits>

#include "common/parallel.h"
#include "layers/activations.h"
#include "simd/vmath.h"

namespace sg {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluC = 0.044715f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;

// At x = -inf the formulas below multiply -inf by a factor that has reached 0 (Phi(x),
// 1 + tanh(.), a slope of 0) and give NaN where the limit is 0; at x = +-inf the GELU
// derivatives add inf * 0 to their limit (1 or 0). Those lanes get the limit; every finite
// lane is computed exactly as before.
inline V::M is_neg_inf(V::R x) { return V::le(x, V::set1(-std::numeric_limits<float>::infinity())); }
inline V::M is_inf(V::R x) { return V::ge(V::abs(x), V::set1(std::numeric_limits<float>::infinity())); }

inline V::R act_fwd(Activation act, V::R x, ActParam param) {
  switch (act) {
    case Activation::none: return x;
    case Activation::relu: return V::max(V::zero(), x);
    case Activation::leaky_relu: {
      V::R y = V::select(V::gt(x, V::zero()), x, V::mul(x, V::set1(param.a)));
      return param.a == 0.0f ? V::select(is_neg_inf(x), V::zero(), y) : y;
    }
    case Activation::gelu: return V::select(is_neg_inf(x), V::zero(), V::mul(x, vphi(x)));
    case Activation::gelu_tanh: {
      V::R inner = V::mul(V::set1(kSqrt2OverPi), V::fma(V::mul(V::set1(kGeluC), x), V::mul(x, x), x));
      V::R y = V::mul(V::mul(V::set1(0.5f), x), V::add(V::set1(1.0f), vtanh(inner)));
      return V::select(is_neg_inf(x), V::zero(), y);
    }
    case Activation::tanh: return vtanh(x);
    case Activation::sigmoid: return vsigmoid(x);
    // -inf * sigmoid(-inf) = -inf * 0: the limit is 0
    case Activation::silu: return V::select(is_neg_inf(x), V::zero(), V::mul(x, vsigmoid(x)));
    case Activation::elu:
      return V::select(V::gt(x, V::zero()), x, V::mul(V::set1(param.a), vexpm1(x)));
    case Activation::softplus: {
      const V::R beta = V::set1(param.a);
      V::R z = V::mul(beta, x);
      V::R soft = V::add(V::max(V::zero(), z), vlog1p_unit(vexp(V::neg(V::abs(z)))));
      return V::select(V::gt(z, V::set1(param.b)), x, V::div(soft, beta));
    }
  }
  return x;
}

// d f / d(input), from `s` = x or y as act_backward_uses_output says.
inline V::R act_grad(Activation act, V::R s, ActParam param) {
  const V::R one = V::set1(1.0f);
  switch (act) {
    case Activation::none: return one;
    case Activation::relu: return V::and_mask(V::gt(s, V::zero()), one);  // unused: see act_bwd
    case Activation::leaky_relu: return V::select(V::gt(s, V::zero()), one, V::set1(param.a));
    case Activation::gelu: {  // Phi(x) + x phi(x)
      V::R pdf = V::mul(V::set1(kInvSqrt2Pi), vexp(V::mul(V::set1(-0.5f), V::mul(s, s))));
      V::R cdf = vphi(s);
      return V::select(is_inf(s), cdf, V::fma(s, pdf, cdf));
    }
    case Activation::gelu_tanh: {
      V::R x2 = V::mul(s, s);
      V::R inner = V::mul(V::set1(kSqrt2OverPi), V::fma(V::mul(V::set1(kGeluC), s), x2, s));
      V::R t = vtanh(inner);
      V::R dinner = V::mul(V::set1(kSqrt2OverPi), V::fma(V::set1(3.0f * kGeluC), x2, one));
      V::R left = V::mul(V::set1(0.5f), V::add(one, t));
      V::R right = V::mul(V::mul(V::set1(0.5f), s), V::mul(V::fnma(t, t, one), dinner));
      return V::select(is_inf(s), left, V::add(left, right));
    }
    // 1 - y^2 as (1 - y)(1 + y): 1 - y is exact near |y| = 1, where y*y rounded first (no
    // fused fnma on the generic path) would cancel to hundreds of ulps.
    case Activation::tanh: return V::mul(V::sub(one, s), V::add(one, s));
    case Activation::sigmoid: return V::mul(s, V::sub(one, s));  // y (1 - y)
    case Activation::silu: {  // sig(x) (1 + x (1 - sig(x))), 1 - sig(x) without cancelling
      V::R e = vexp(V::neg(V::abs(s)));
      V::R pos = V::div(one, V::add(one, e));  // sigmoid(|x|)
      const V::M neg = V::lt(s, V::zero());
      V::R sig = V::select(neg, V::mul(e, pos), pos);
      V::R comp = V::select(neg, pos, V::mul(e, pos));  // 1 - sigmoid(x)
      // at +-inf, x (1 - sig) is inf * 0: the limits are 1 and 0, sigmoid's
      return V::select(is_inf(s), sig, V::mul(sig, V::fma(s, comp, one)));
    }
    case Activation::elu:  // x <= 0 (and NaN) -> alpha e^x, as torch's x <= 0 branch
      return V::select(V::gt(s, V::zero()), one, V::mul(V::set1(param.a), vexp(s)));
    case Activation::softplus: {  // sigmoid(beta x); 1 in the linear region
      V::R z = V::mul(V::set1(param.a), s);
      return V::select(V::gt(z, V::set1(param.b)), one, vsigmoid(z));
    }
  }
  return one;
}

// dx for one vector; relu masks dy (rather than multiplying by 0/1) as torch's
// threshold_backward does: x <= 0 gives 0 even where dy is NaN, and x = NaN passes dy through.
inline V::R act_bwd(Activation act, V::R dy, V::R s, ActParam param) {
  if (act == Activation::relu) return V::select(V::le(s, V::zero()), V::zero(), dy);
  return V::mul(dy, act_grad(act, s, param));
}

void act_forward_range(Activation act, float* y, const float* x, int64_t b, int64_t e,
                       ActParam param) {
  int64_t i = b;
  for (; i + V::W <= e; i += V::W) V::store(y + i, act_fwd(act, V::load(x + i), param));
  if (i < e) V::store_n(y + i, act_fwd(act, V::load_n(x + i, e - i), param), e - i);
}

void act_backward_range(Activation act, float* dx, const float* dy, const float* s, int64_t b,
                        int64_t e, ActParam param) {
  int64_t i = b;
  for (; i + V::W <= e; i += V::W)
    V::store(dx + i, act_bwd(act, V::load(dy + i), V::load(s + i), param));
  if (i < e) {
    const int64_t w = e - i;
    V::store_n(dx + i, act_bwd(act, V::load_n(dy + i, w), V::load_n(s + i, w), param), w);
  }
}

void act_forward(Activation act, float* y, const float* x, int64_t n, ActParam param) {
  parallel_chunks(n, 1 << 14,
                  [&](int64_t b, int64_t e) { act_forward_range(act, y, x, b, e, param); });
}

void act_backward(Activation act, float* dx, const float* dy, const float* s, int64_t n,
                  ActParam param) {
  parallel_chunks(n, 1 << 14,
                  [&](int64_t b, int64_t e) { act_backward_range(act, dx, dy, s, b, e, param); });
}

}  // namespace
}  // namespace sg
