// Vectorised transcendental functions over V (exp, expm1, log1p on [0, 1], tanh, sigmoid,
// Phi/erf). Include after one
// vec_*.h. Accuracy targets: a few float ulps on the ranges the layers use; no -ffast-math.
#pragma once

namespace sg {
namespace {

// vexp's and vexpm1's shared first half, Cephes-style: x (already clamped) = n*ln2 + r with
// |r| <= ln2/2 (ln2 split in two, so r is exact), and p(r), the polynomial with
// e^r = 1 + r + r^2 p(r) (the degree-6 polynomial for e^r, less its first two terms).
struct ExpSplit {
  V::R n, r, p;
};
inline ExpSplit vexp_split(V::R x) {
  V::R n = V::round(V::mul(x, V::set1(1.44269504088896341f)));
  V::R r = V::fnma(n, V::set1(0.693359375f), x);
  r = V::fnma(n, V::set1(-2.12194440e-4f), r);
  V::R p = V::set1(1.9875691500e-4f);
  p = V::fma(p, r, V::set1(1.3981999507e-3f));
  p = V::fma(p, r, V::set1(8.3334519073e-3f));
  p = V::fma(p, r, V::set1(4.1665795894e-2f));
  p = V::fma(p, r, V::set1(1.6666665459e-1f));
  p = V::fma(p, r, V::set1(5.0000001201e-1f));
  return {n, r, p};
}

// exp(x) = 2^n e^r (vexp_split). Below -87.3 (where e^x would be subnormal) the result is 0,
// as torch's sigmoid(-inf) = 0 and gelu(-50) = -0 need; above 88 it saturates at e^88
// (callers never feed exp large positive arguments). x goes second in max/min: they return
// the second operand when unordered, so NaN stays NaN.
inline V::R vexp(V::R x) {
  const V::M underflow = V::lt(x, V::set1(-87.3365f));
  const ExpSplit s = vexp_split(V::min(V::set1(88.0f), V::max(V::set1(-87.3365f), x)));
  const V::R e_r = V::fma(s.p, V::mul(s.r, s.r), V::add(s.r, V::set1(1.0f)));
  return V::select(underflow, V::zero(), V::mul(e_r, V::pow2(s.n)));
}

// expm1(x) = 2^n (e^r - 1) + (2^n - 1) with vexp_split's n, r and polynomial: for
// |x| <= ln2/2 (n = 0) it is the polynomial e^r - 1 alone, so it keeps relative accuracy near 0
// where exp(x) - 1 cancels. Below -30 the result rounds to -1 (e^-30 < 2^-43); above 88 it
// saturates like vexp. NaN stays NaN.
inline V::R vexpm1(V::R x) {
  const ExpSplit s = vexp_split(V::min(V::set1(88.0f), V::max(V::set1(-30.0f), x)));
  V::R em1 = V::fma(s.p, V::mul(s.r, s.r), s.r);  // e^r - 1
  V::R t = V::pow2(s.n);
  return V::fma(t, em1, V::sub(t, V::set1(1.0f)));
}

// log(1 + u) for u in [0, 1] (softplus's and the logit losses' log1p(e^-|z|)) as 2 atanh(s), s = u / (2 + u) in
// [0, 1/3]: the odd series to s^15 leaves a relative error below 2e-9, and u -> 0 keeps
// relative accuracy (log1p(u) ~ u). NaN stays NaN.
inline V::R vlog1p_unit(V::R u) {
  V::R s = V::div(u, V::add(V::set1(2.0f), u));
  V::R z = V::mul(s, s);
  V::R p = V::set1(1.0f / 15.0f);
  p = V::fma(p, z, V::set1(1.0f / 13.0f));
  p = V::fma(p, z, V::set1(1.0f / 11.0f));
  p = V::fma(p, z, V::set1(1.0f / 9.0f));
  p = V::fma(p, z, V::set1(1.0f / 7.0f));
  p = V::fma(p, z, V::set1(1.0f / 5.0f));
  p = V::fma(p, z, V::set1(1.0f / 3.0f));
  p = V::fma(p, z, V::set1(1.0f));
  return V::mul(V::add(s, s), p);
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
