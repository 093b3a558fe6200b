// Vectorised transcendental functions over V (exp, tanh, sigmoid, log1p on [0, 1], Phi/erf).
// Include after one vec_*.h. Accuracy targets: a few float ulps on the ranges the layers use; no -ffast-math.
#pragma once

namespace sg {
namespace {

// exp(x), Cephes-style: x = n*ln2 + r, |r| <= ln2/2, degree-6 polynomial for e^r.
// Below -87.3 (where e^x would be subnormal) the result is 0, as torch's sigmoid(-inf) = 0
// and gelu(-50) = -0 need; above 88 it saturates at e^88 (callers never feed exp large
// positive arguments). x goes second in max/min: they return the second operand when
// unordered, so NaN stays NaN.
inline V::R vexp(V::R x) {
  const V::M underflow = V::lt(x, V::set1(-87.3365f));
  x = V::min(V::set1(88.0f), V::max(V::set1(-87.3365f), x));
  V::R n = V::round(V::mul(x, V::set1(1.44269504088896341f)));
  V::R r = V::fnma(n, V::set1(0.693359375f), x);
  r = V::fnma(n, V::set1(-2.12194440e-4f), r);
  V::R p = V::set1(1.9875691500e-4f);
  p = V::fma(p, r, V::set1(1.3981999507e-3f));
  p = V::fma(p, r, V::set1(8.3334519073e-3f));
  p = V::fma(p, r, V::set1(4.1665795894e-2f));
  p = V::fma(p, r, V::set1(1.6666665459e-1f));
  p = V::fma(p, r, V::set1(5.0000001201e-1f));
  p = V::fma(p, V::mul(r, r), V::add(r, V::set1(1.0f)));
  return V::select(underflow, V::zero(), V::mul(p, V::pow2(n)));
}

// tanh: odd polynomial near 0 (Cephes tanhf) where 1 - 2/(e^2x + 1) would cancel.
inline V::R vtanh(V::R x) {
  V::R ax = V::abs(x);
  V::R z = V::mul(x, x);
  V::R p = V::set1(-5.70498872745e-3f);
  p = V::fma(p, z, V::set1(2.06390887954e-2f));
  p = V::fma(p, z, V::set1(-5.37397155531e-2f));
  p = V::fma(p, z, V::set1(1.33314422036e-1f));
  p = V::fma(p, z, V::set1(-3.33332819422e-1f));
  V::R small = V::fma(V::mul(p, z), x, x);
  V::R e = vexp(V::mul(V::min(V::set1(44.0f), ax), V::set1(2.0f)));  // NaN stays NaN
  V::R big = V::sub(V::set1(1.0f), V::div(V::set1(2.0f), V::add(e, V::set1(1.0f))));
  // Copy the sign of x onto big (x < 0 -> -big).
  big = V::select(V::lt(x, V::zero()), V::neg(big), big);
  return V::select(V::lt(ax, V::set1(0.625f)), small, big);
}

// 1 / (1 + e^-x), without overflow for large |x|. For x < 0 it is e/(1 + e) with e = e^x:
// 1 - sigmoid(|x|) would cancel to 0 below x ~ -17 (torch gives 1.9e-22 at -50).
inline V::R vsigmoid(V::R x) {
  V::R e = vexp(V::neg(V::abs(x)));  // in (0, 1]
  V::R one = V::set1(1.0f);
  V::R pos = V::div(one, V::add(one, e));  // sigmoid(|x|)
  return V::select(V::lt(x, V::zero()), V::mul(e, pos), pos);
}

// log1p(t) for t in [0, 1] (the softplus of -|x| that the logit losses need): Cephes logf's
// polynomial on u = 1 + t in [1, 2] reduced to [sqrt(1/2), sqrt(2)), then Goldberg's
// correction log(u) * t / (u - 1) (u - 1 is exact here), so a t below float eps gives t, not 0.
inline V::R vlog1p_unit(V::R t) {
  const V::R one = V::set1(1.0f);
  const V::R u = V::add(one, t);
  const V::M big = V::gt(u, V::set1(1.41421356237f));
  const V::R e = V::and_mask(big, one);
  const V::R m = V::select(big, V::mul(u, V::set1(0.5f)), u);
  const V::R x = V::sub(m, one);
  const V::R z = V::mul(x, x);
  V::R p = V::set1(7.0376836292e-2f);
  p = V::fma(p, x, V::set1(-1.1514610310e-1f));
  p = V::fma(p, x, V::set1(1.1676998740e-1f));
  p = V::fma(p, x, V::set1(-1.2420140846e-1f));
  p = V::fma(p, x, V::set1(1.4249322787e-1f));
  p = V::fma(p, x, V::set1(-1.6668057665e-1f));
  p = V::fma(p, x, V::set1(2.0000714765e-1f));
  p = V::fma(p, x, V::set1(-2.4999993993e-1f));
  p = V::fma(p, x, V::set1(3.3333331174e-1f));
  V::R y = V::mul(V::mul(p, x), z);
  y = V::fma(e, V::set1(-2.12194440e-4f), y);
  y = V::fnma(V::set1(0.5f), z, y);
  const V::R logu = V::fma(e, V::set1(0.693359375f), V::add(x, y));
  const V::R um1 = V::sub(u, one);
  return V::select(V::eq(um1, V::zero()), t, V::mul(logu, V::div(t, V::select(V::eq(um1, V::zero()), one, um1))));
}

// Standard normal CDF Phi(x) = erfc(-x/sqrt2)/2, using the Numerical-Recipes erfc
// (fractional error < 1.2e-7) so the negative tail keeps relative accuracy.
inline V::R vphi(V::R x) {
  V::R z = V::abs(V::mul(x, V::set1(0.70710678118654752f)));
  V::R one = V::set1(1.0f);
  V::R t = V::div(one, V::fma(V::set1(0.5f), z, one));
  V::R p = V::set1(0.17087277f);
  p = V::fma(p, t, V::set1(-0.82215223f));
  p = V::fma(p, t, V::set1(1.48851587f));
  p = V::fma(p, t, V::set1(-1.13520398f));
  p = V::fma(p, t, V::set1(0.27886807f));
  p = V::fma(p, t, V::set1(-0.18628806f));
  p = V::fma(p, t, V::set1(0.09678418f));
  p = V::fma(p, t, V::set1(0.37409196f));
  p = V::fma(p, t, V::set1(1.00002368f));
  p = V::fma(p, t, V::set1(-1.26551223f));
  V::R erfc_z = V::mul(t, vexp(V::sub(p, V::mul(z, z))));  // erfc(|x|/sqrt2)
  V::R half_erfc = V::mul(V::set1(0.5f), erfc_z);
  return V::select(V::lt(x, V::zero()), half_erfc, V::sub(one, half_erfc));
}

}  // namespace
}  // namespace sg
