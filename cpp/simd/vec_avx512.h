// V: the 16-lane float vector for AVX-512 (F/VL/BW/DQ) translation units. Include in *__avx512.cpp
// only, before a family's *_impl.h. Everything lives in an anonymous namespace so that the
// same names compiled with other flags in other files never meet at link time.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace sg {
namespace {

constexpr const char* kIsaName = "avx512";

struct V {
  using R = __m512;
  using M = __mmask16;
  static constexpr int W = 16;
  static inline M tail_mask(int64_t n) { return static_cast<M>((1u << n) - 1u); }

  static inline R zero() { return _mm512_setzero_ps(); }
  static inline R set1(float x) { return _mm512_set1_ps(x); }
  static inline R load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, R x) { _mm512_storeu_ps(p, x); }
  // n in [0, W): lanes past n read as 0 and are never touched.
  static inline R load_n(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(tail_mask(n), p); }
  static inline void store_n(float* p, R x, int64_t n) { _mm512_mask_storeu_ps(p, tail_mask(n), x); }
  static inline void stream(float* p, R x) { _mm512_storeu_ps(p, x); }

  // Deliberate parallel of vec_avx2.h (and vec_generic.h): each V spells the one interface the
  // *_impl.h kernels are written against, so the operation lists match line for line.
  static inline R add(R a, R b) { return _mm512_add_ps(a, b); }
  static inline R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static inline R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static inline R div(R a, R b) { return _mm512_div_ps(a, b); }
  static inline R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }    // a*b + c
  static inline R fnma(R a, R b, R c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a*b
  static inline R max(R a, R b) { return _mm512_max_ps(a, b); }
  static inline R min(R a, R b) { return _mm512_min_ps(a, b); }
  static inline R sqrt(R a) { return _mm512_sqrt_ps(a); }
  static inline R abs(R a) { return _mm512_abs_ps(a); }
  static inline R neg(R a) { return _mm512_xor_ps(a, _mm512_set1_ps(-0.0f)); }
  static inline R round(R a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // 2^n for integral n in [-126, 127].
  static inline R pow2(R n) {
    __m512i i = _mm512_cvtps_epi32(n);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(i, _mm512_set1_epi32(127)), 23));
  }

  static inline M gt(R a, R b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static inline M ge(R a, R b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
  static inline M lt(R a, R b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  static inline M le(R a, R b) { return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ); }
  static inline M unord(R a, R b) { return _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q); }
  static inline M eq(R a, R b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  static inline M mask_or(M a, M b) { return static_cast<M>(a | b); }
  static inline bool any(M m) { return m != 0; }
  static inline R select(M m, R a, R b) { return _mm512_mask_blend_ps(m, b, a); }  // m ? a : b
  static inline R and_mask(M m, R a) { return _mm512_maskz_mov_ps(m, a); }       // m ? a : 0

  // int32 lanes <-> float lanes (pooling's argmax indices): exact for |value| < 2^24.
  static inline R load_i32(const int32_t* p) { return _mm512_cvtepi32_ps(_mm512_loadu_si512(p)); }
  static inline R load_i32_n(const int32_t* p, int64_t n) {
    return _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(tail_mask(n), p));
  }
  static inline void store_i32(int32_t* p, R x) { _mm512_storeu_si512(p, _mm512_cvtps_epi32(x)); }
  static inline void store_i32_n(int32_t* p, R x, int64_t n) {
    _mm512_mask_storeu_epi32(p, tail_mask(n), _mm512_cvtps_epi32(x));
  }

  static inline float reduce_add(R a) { return _mm512_reduce_add_ps(a); }
  static inline float reduce_max(R a) { return _mm512_reduce_max_ps(a); }
};

// Double-precision helper for deterministic reductions: 8 lanes.
struct VD {
  using R = __m512d;
  static constexpr int W = 8;
  static inline R zero() { return _mm512_setzero_pd(); }
  static inline R cvt_lo(__m512 x) { return _mm512_cvtps_pd(_mm512_castps512_ps256(x)); }
  static inline R cvt_hi(__m512 x) {
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
  }
  static inline R fma(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
  static inline void store(double* p, R x) { _mm512_storeu_pd(p, x); }
};

}  // namespace
}  // namespace sg
