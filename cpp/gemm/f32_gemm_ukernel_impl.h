// Register-blocked MR x (NRV*W) GEMM microkernel over V: broadcast one A value per row, load
// NRV vectors of B, FMA into MR*NRV accumulators. One body serves packed and in-place
// ("sup") operands, so every path runs the same k-ordered FMA chain per element: results
// do not depend on which path or how many threads ran. Included once per ISA TU.
#pragma once
#include <cstdint>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "gemm/gemm_ukernel.h"

namespace sg {
namespace {

// A full MR x NR tile's epilogue with alpha 1, beta 0 or 1: the same operations, in the same
// order, as the general epilogue below (so every path rounds alike).
template <int MR, int NRV, bool kBeta1, bool kBias, bool kRelu>
inline void f32_gemm_store_tile(const typename V::R (&acc)[MR][NRV], float* c, int64_t ldc,
                                const float* bias) {
  constexpr int W = V::W;
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
    for (int v = 0; v < NRV; ++v) {
      float* p = c + r * ldc + v * W;
      typename V::R x = acc[r][v];
      if (kBeta1) x = V::fma(V::load(p), V::set1(1.0f), x);
      if (kBias) x = V::add(x, V::load(bias + v * W));
      if (kRelu) x = V::max(V::zero(), x);
      V::store(p, x);
    }
  }
}

// C is touched only after the k loop: start its lines coming now, so the epilogue's loads
// (beta != 0) and stores do not stall on a miss per row.
template <int MR, int NR>
inline void f32_gemm_prefetch_c(float* c, int64_t ldc, int64_t mr) {
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r) {
    if (r < mr) {
#pragma GCC unroll 4
      for (int l = 0; l < NR; l += 16) __builtin_prefetch(c + r * ldc + l, 1, 3);
      __builtin_prefetch(c + r * ldc + NR - 1, 1, 3);  // an unaligned row spans one more line
    }
  }
}

template <int MR, int NRV>
inline void f32_gemm_zero(typename V::R (&acc)[MR][NRV]) {
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NRV; ++v) acc[r][v] = V::zero();
}

// One k step: C's MR x NR accumulators += A's column (row r's value a_of(r)) times the
// NR-wide row of the B micropanel at b.
template <int MR, int NRV, class AOf>
inline void f32_gemm_kstep(typename V::R (&acc)[MR][NRV], const AOf& a_of, const float* b) {
  constexpr int W = V::W;
  typename V::R bv[NRV];
#pragma GCC unroll 8
  for (int v = 0; v < NRV; ++v) bv[v] = V::load(b + v * W);
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r) {
    const typename V::R ar = V::set1(a_of(r));
#pragma GCC unroll 8
    for (int v = 0; v < NRV; ++v) acc[r][v] = V::fma(ar, bv[v], acc[r][v]);
  }
}

// C(mr, nr) = epilogue(acc): the same for the packed, in-place and indirect kernels.
template <int MR, int NRV>
inline void f32_gemm_epilogue(const typename V::R (&acc)[MR][NRV], float* c, int64_t ldc,
                              int64_t mr, int64_t nr, const GemmEpilogue& ep) {
  constexpr int W = V::W;
  constexpr int NR = NRV * W;
  // Full tiles with alpha 1 and beta 0 or 1 (every tile of an MLP layer's products) store
  // through a variant compiled for their bias/ReLU/beta flags: with a short k loop (dW = dY^T X
  // has k = batch) the general epilogue's per-vector tests are a noticeable share of the tile.
  if (mr == MR && nr == NR && ep.alpha == 1.0f && (ep.beta == 0.0f || ep.beta == 1.0f)) {
    const int which = (ep.beta == 1.0f ? 4 : 0) | (ep.bias ? 2 : 0) | (ep.relu ? 1 : 0);
    switch (which) {
      case 0: return f32_gemm_store_tile<MR, NRV, false, false, false>(acc, c, ldc, ep.bias);
      case 1: return f32_gemm_store_tile<MR, NRV, false, false, true>(acc, c, ldc, ep.bias);
      case 2: return f32_gemm_store_tile<MR, NRV, false, true, false>(acc, c, ldc, ep.bias);
      case 3: return f32_gemm_store_tile<MR, NRV, false, true, true>(acc, c, ldc, ep.bias);
      case 4: return f32_gemm_store_tile<MR, NRV, true, false, false>(acc, c, ldc, ep.bias);
      case 5: return f32_gemm_store_tile<MR, NRV, true, false, true>(acc, c, ldc, ep.bias);
      case 6: return f32_gemm_store_tile<MR, NRV, true, true, false>(acc, c, ldc, ep.bias);
      default: return f32_gemm_store_tile<MR, NRV, true, true, true>(acc, c, ldc, ep.bias);
    }
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

template <int MR, int NRV, bool kPackedA>
void f32_gemm_ukernel(int64_t kc, const float* __restrict a, int64_t rsa, int64_t csa,
                      const float* __restrict b, float* c, int64_t ldc, int64_t mr, int64_t nr,
                      const GemmEpilogue& ep) {
  constexpr int NR = NRV * V::W;
  if (kPackedA) rsa = 1, csa = MR;
  f32_gemm_prefetch_c<MR, NR>(c, ldc, mr);
  typename V::R acc[MR][NRV];
  f32_gemm_zero<MR, NRV>(acc);

  // Unrolled by 4 so the loop overhead and pointer bumps amortise; the hardware prefetchers
  // follow the (sequential) packed panels and the in-place A rows.
#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    // Packed A streams from L2: ask for it 16 k steps ahead (as BLIS's haswell kernel does).
    if (kPackedA) __builtin_prefetch(a + 16 * MR);
    f32_gemm_kstep<MR, NRV>(acc, [&](int r) { return a[r * rsa]; }, b);
    a += csa;
    b += NR;
  }
  f32_gemm_epilogue<MR, NRV>(acc, c, ldc, mr, nr, ep);
}

// The indirect kernel (GemmIgemmFn): the same k-ordered FMA chain as the packed kernel over the
// k steps of nseg runs, run s reading row r's values from rows[s * MR + r][0, len[s]).
template <int MR, int NRV>
void f32_igemm_ukernel(int64_t nseg, const float* const* rows, const int64_t* len,
                       const float* __restrict b, float* c, int64_t ldc, int64_t mr, int64_t nr,
                       const GemmEpilogue& ep) {
  constexpr int NR = NRV * V::W;
  f32_gemm_prefetch_c<MR, NR>(c, ldc, mr);
  typename V::R acc[MR][NRV];
  f32_gemm_zero<MR, NRV>(acc);
  for (int64_t s = 0; s < nseg; ++s, rows += MR) {
    const float* src[MR];
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) src[r] = rows[r];
    const int64_t n = len[s];
#pragma GCC unroll 2
    for (int64_t p = 0; p < n; ++p, b += NR) {
      f32_gemm_kstep<MR, NRV>(acc, [&](int r) { return src[r][p]; }, b);
    }
  }
  f32_gemm_epilogue<MR, NRV>(acc, c, ldc, mr, nr, ep);
}

// Packing that walks the k rows of a row-major source touches one short run per row; with a
// large leading dimension every row is a new 4 KiB page, where the hardware prefetchers stop,
// so each packer prefetches the row this many k steps ahead itself.
constexpr int64_t kPackPrefetchRows = 16;

// Packing with the tile shape known at compile time: the per-k copies unroll fully and the
// contiguous cases become vector moves. Strided sources are read as MR (NR) parallel streams
// and the panel is written in order.
template <int MR>
void f32_gemm_pack_a(bool trans, const float* a, int64_t lda, int64_t i0, int64_t rows,
                     int64_t p0, int64_t kc, float* d) {
  if (trans) {  // op(A)(i, p) = a[p * lda + i]: each k step is a contiguous run of rows
    for (int64_t p = 0; p < kc; ++p, d += MR) {
      const float* s = a + (p0 + p) * lda + i0;
      __builtin_prefetch(s + kPackPrefetchRows * lda);
      if (rows == MR) {
#pragma GCC unroll 32
        for (int r = 0; r < MR; ++r) d[r] = s[r];
      } else {
        for (int r = 0; r < MR; ++r) d[r] = r < rows ? s[r] : 0.0f;
      }
    }
    return;
  }
  const float* src[MR];  // op(A)(i, p) = a[i * lda + p]: MR row streams
  for (int r = 0; r < MR; ++r) src[r] = a + (i0 + (r < rows ? r : rows - 1)) * lda + p0;
  if (rows == MR) {
    for (int64_t p = 0; p < kc; ++p, d += MR) {
#pragma GCC unroll 32
      for (int r = 0; r < MR; ++r) d[r] = src[r][p];
    }
  } else {
    for (int64_t p = 0; p < kc; ++p, d += MR) {
#pragma GCC unroll 32
      for (int r = 0; r < MR; ++r) d[r] = r < rows ? src[r][p] : 0.0f;
    }
  }
}

template <int NRV>
void f32_gemm_pack_b(bool trans, const float* b, int64_t ldb, int64_t p0, int64_t kc, int64_t j0,
                     int64_t cols, float* d) {
  constexpr int W = V::W, NR = NRV * W;
  if (!trans) {  // op(B)(p, j) = b[p * ldb + j]: contiguous rows
    for (int64_t p = 0; p < kc; ++p, d += NR) {
      const float* s = b + (p0 + p) * ldb + j0;
      __builtin_prefetch(s + kPackPrefetchRows * ldb);
      if (NR * 4 > 64) __builtin_prefetch(s + kPackPrefetchRows * ldb + NR - 1);
      if (cols == NR) {
#pragma GCC unroll 8
        for (int v = 0; v < NRV; ++v) V::store(d + v * W, V::load(s + v * W));
      } else {
        for (int c = 0; c < NR; ++c) d[c] = c < cols ? s[c] : 0.0f;
      }
    }
    return;
  }
  const float* src[NR];  // op(B)(p, j) = b[j * ldb + p]: NR column streams
  for (int c = 0; c < NR; ++c) src[c] = b + (j0 + (c < cols ? c : cols - 1)) * ldb + p0;
  int64_t p = 0;
#if defined(__AVX2__)
  // The transposed copy is the forward pass's (Y = X W^T) only packing cost: do it as 8 x 8
  // register transposes (8 loads, 24 shuffles, 8 stores per 64 floats) rather than 64
  // scalar moves. Columns past `cols` repeat the last column and are zeroed after.
  if (NR % 8 == 0) {
    for (; p + 8 <= kc; p += 8) {
      float* dp = d + p * NR;
#pragma GCC unroll 4
      for (int c0 = 0; c0 < NR; c0 += 8) {
        __m256 r0 = _mm256_loadu_ps(src[c0 + 0] + p), r1 = _mm256_loadu_ps(src[c0 + 1] + p);
        __m256 r2 = _mm256_loadu_ps(src[c0 + 2] + p), r3 = _mm256_loadu_ps(src[c0 + 3] + p);
        __m256 r4 = _mm256_loadu_ps(src[c0 + 4] + p), r5 = _mm256_loadu_ps(src[c0 + 5] + p);
        __m256 r6 = _mm256_loadu_ps(src[c0 + 6] + p), r7 = _mm256_loadu_ps(src[c0 + 7] + p);
        __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
        __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
        __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
        __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        _mm256_storeu_ps(dp + 0 * NR + c0, _mm256_permute2f128_ps(u0, u4, 0x20));
        _mm256_storeu_ps(dp + 1 * NR + c0, _mm256_permute2f128_ps(u1, u5, 0x20));
        _mm256_storeu_ps(dp + 2 * NR + c0, _mm256_permute2f128_ps(u2, u6, 0x20));
        _mm256_storeu_ps(dp + 3 * NR + c0, _mm256_permute2f128_ps(u3, u7, 0x20));
        _mm256_storeu_ps(dp + 4 * NR + c0, _mm256_permute2f128_ps(u0, u4, 0x31));
        _mm256_storeu_ps(dp + 5 * NR + c0, _mm256_permute2f128_ps(u1, u5, 0x31));
        _mm256_storeu_ps(dp + 6 * NR + c0, _mm256_permute2f128_ps(u2, u6, 0x31));
        _mm256_storeu_ps(dp + 7 * NR + c0, _mm256_permute2f128_ps(u3, u7, 0x31));
      }
      if (cols < NR) {
        for (int q = 0; q < 8; ++q)
          for (int c = static_cast<int>(cols); c < NR; ++c) dp[q * NR + c] = 0.0f;
      }
    }
  }
#endif
  for (d += p * NR; p < kc; ++p, d += NR) {
#pragma GCC unroll 64
    for (int c = 0; c < NR; ++c) d[c] = c < cols ? src[c][p] : 0.0f;
  }
}

// Consecutive micropanels: columns [j0, j0+cols) of op(B), any cols, into ceil(cols/NR)
// micropanels at dst, dst + NR*kc, ... An untransposed B is walked row by row across all of
// them, so the source is read sequentially (a micropanel at a time would read 64 B per row and
// jump a whole row, which no prefetcher follows past a page).
template <int NRV>
void f32_gemm_pack_b_panels(bool trans, const float* b, int64_t ldb, int64_t p0, int64_t kc,
                            int64_t j0, int64_t cols, float* d) {
  constexpr int W = V::W, NR = NRV * W;
  const int64_t full = cols / NR, rest = cols % NR;
  if (trans) {
    for (int64_t q = 0; q < full; ++q) f32_gemm_pack_b<NRV>(true, b, ldb, p0, kc, j0 + q * NR, NR, d + q * NR * kc);
  } else {
    for (int64_t p = 0; p < kc; ++p) {
      const float* s = b + (p0 + p) * ldb + j0;
      float* dp = d + p * NR;
      for (int64_t q = 0; q < full; ++q, s += NR, dp += NR * kc) {
#pragma GCC unroll 8
        for (int v = 0; v < NRV; ++v) V::store(dp + v * W, V::load(s + v * W));
      }
    }
  }
  if (rest) f32_gemm_pack_b<NRV>(trans, b, ldb, p0, kc, j0 + full * NR, rest, d + full * NR * kc);
}

// The table's kernels for one tile shape: fn[A packed], the packers, the indirect kernel.
#define SG_GEMM_UKERNELS(MR, NRV)                                                    \
  {&f32_gemm_ukernel<MR, NRV, false>, &f32_gemm_ukernel<MR, NRV, true>},             \
      &f32_gemm_pack_a<MR>, &f32_gemm_pack_b<NRV>, &f32_gemm_pack_b_panels<NRV>,     \
      &f32_igemm_ukernel<MR, NRV>

}  // namespace
}  // namespace sg
