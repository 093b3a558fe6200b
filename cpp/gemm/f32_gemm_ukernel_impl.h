// Register-blocked MR x (NRV*W) GEMM microkernel over V: broadcast one A value per row, load
// NRV vectors of B, FMA into MR*NRV accumulators. Included once per ISA translation unit.
#pragma once
#include <cstdint>

#include "gemm/gemm_ukernel.h"

namespace sg {
namespace {

template <int MR, int NRV>
void f32_gemm_ukernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* c,
                      int64_t ldc, int64_t mr, int64_t nr, const GemmEpilogue& ep) {
  constexpr int W = V::W;
  constexpr int NR = NRV * W;
  typename V::R acc[MR][NRV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NRV; ++v) acc[r][v] = V::zero();

  for (int64_t p = 0; p < kc; ++p) {
    typename V::R bv[NRV];
#pragma GCC unroll 8
    for (int v = 0; v < NRV; ++v) bv[v] = V::load(b + v * W);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      const typename V::R ar = V::set1(a[r]);
#pragma GCC unroll 8
      for (int v = 0; v < NRV; ++v) acc[r][v] = V::fma(ar, bv[v], acc[r][v]);
    }
    a += MR;
    b += NR;
  }

  const typename V::R alpha = V::set1(ep.alpha);
  const typename V::R beta = V::set1(ep.beta);
  const bool scale = ep.alpha != 1.0f;
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r) {
    if (r >= mr) break;
    float* crow = c + r * ldc;
#pragma GCC unroll 8
    for (int v = 0; v < NRV; ++v) {
      const int64_t j = static_cast<int64_t>(v) * W;
      if (j >= nr) break;
      const int64_t w = nr - j < W ? nr - j : W;
      typename V::R x = scale ? V::mul(acc[r][v], alpha) : acc[r][v];
      if (ep.beta != 0.0f) {
        const typename V::R old = w == W ? V::load(crow + j) : V::load_n(crow + j, w);
        x = V::fma(old, beta, x);
      }
      if (ep.bias) x = V::add(x, w == W ? V::load(ep.bias + j) : V::load_n(ep.bias + j, w));
      if (ep.relu) x = V::max(V::zero(), x);  // max(0, NaN) = NaN, like torch.relu
      if (w == W) V::store(crow + j, x);
      else V::store_n(crow + j, x, w);
    }
  }
}

}  // namespace
}  // namespace sg
