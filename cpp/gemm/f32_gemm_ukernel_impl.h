// Register-blocked MR x (NRV*W) GEMM microkernel over V: broadcast one A value per row, load
// NRV vectors of B, FMA into MR*NRV accumulators. One body serves packed and in-place
// ("sup") operands, so every path runs the same k-ordered FMA chain per element: results
// do not depend on which path or how many threads ran. Included once per ISA TU.
#pragma once
#include <cstdint>

#include "gemm/gemm_ukernel.h"

namespace sg {
namespace {

template <int MR, int NRV, bool kPackedA, bool kPackedB>
void f32_gemm_ukernel(int64_t kc, const float* __restrict a, int64_t rsa, int64_t csa,
                      const float* __restrict b, int64_t rsb, float* c, int64_t ldc, int64_t mr,
                      int64_t nr, const GemmEpilogue& ep) {
  constexpr int W = V::W;
  constexpr int NR = NRV * W;
  if (kPackedA) rsa = 1, csa = MR;
  if (kPackedB) rsb = NR;

  // C is touched only after the k loop: start its lines coming now, so the epilogue's loads
  // (beta != 0) and stores do not stall on a miss per row.
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r) {
    if (r < mr) {
      __builtin_prefetch(c + r * ldc, 1, 3);
      __builtin_prefetch(c + r * ldc + NR - 1, 1, 3);
    }
  }

  typename V::R acc[MR][NRV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NRV; ++v) acc[r][v] = V::zero();

  // Unrolled by 4 so the loop overhead and pointer bumps amortise; the hardware prefetchers
  // follow the (sequential) packed panels and the (constant-stride) in-place rows.
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    typename V::R bv[NRV];
#pragma GCC unroll 8
    for (int v = 0; v < NRV; ++v) bv[v] = V::load(b + v * W);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      const typename V::R ar = V::set1(a[r * rsa]);
#pragma GCC unroll 8
      for (int v = 0; v < NRV; ++v) acc[r][v] = V::fma(ar, bv[v], acc[r][v]);
    }
    a += csa;
    b += rsb;
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

// The table entry for one tile shape: fn[A packed][B packed].
#define SG_GEMM_UKERNELS(MR, NRV)                                                        \
  {                                                                                      \
    {&f32_gemm_ukernel<MR, NRV, false, false>, &f32_gemm_ukernel<MR, NRV, false, true>}, \
    {&f32_gemm_ukernel<MR, NRV, true, false>, &f32_gemm_ukernel<MR, NRV, true, true>},   \
  }

}  // namespace
}  // namespace sg
