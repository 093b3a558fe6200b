// V: the 8-lane float vector for AVX2+FMA translation units. Include in *__avx2.cpp only,
// before a family's *_impl.h. Anonymous namespace: see vec_avx512.h.
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace sg {
namespace {

constexpr const char* kIsaName = "avx2";

alignas(64) constexpr int32_t kAvx2TailMaskTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                        0,  0,  0,  0,  0,  0,  0,  0};

struct V {
  using R = __m256;
  using M = __m256;
  static constexpr int W = 8;
  static inline __m256i tail_mask(int64_t n) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kAvx2TailMaskTable + 8 - n));
  }

  static inline R zero() { return _mm256_setzero_ps(); }
  static inline R set1(float x) { return _mm256_set1_ps(x); }
  static inline R load(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, R x) { _mm256_storeu_ps(p, x); }
  static inline R load_n(const float* p, int64_t n) { return _mm256_maskload_ps(p, tail_mask(n)); }
  static inline void store_n(float* p, R x, int64_t n) { _mm256_maskstore_ps(p, tail_mask(n), x); }

  // Deliberate parallel of vec_avx512.h (and vec_generic.h): each V spells the one interface the
  // *_impl.h kernels are written against, so the operation lists match line for line.
  static inline R add(R a, R b) { return _mm256_add_ps(a, b); }
  static inline R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static inline R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static inline R div(R a, R b) { return _mm256_div_ps(a, b); }
  static inline R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static inline R fnma(R a, R b, R c) { return _mm256_fnmadd_ps(a, b, c); }
  static inline R max(R a, R b) { return _mm256_max_ps(a, b); }
  static inline R min(R a, R b) { return _mm256_min_ps(a, b); }
  static inline R sqrt(R a) { return _mm256_sqrt_ps(a); }
  static inline R abs(R a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static inline R neg(R a) { return _mm256_xor_ps(a, _mm256_set1_ps(-0.0f)); }
  static inline R round(R a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static inline R pow2(R n) {
    __m256i i = _mm256_cvtps_epi32(n);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(i, _mm256_set1_epi32(127)), 23));
  }

  static inline M gt(R a, R b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static inline M ge(R a, R b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
  static inline M lt(R a, R b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static inline M le(R a, R b) { return _mm256_cmp_ps(a, b, _CMP_LE_OQ); }
  static inline M unord(R a, R b) { return _mm256_cmp_ps(a, b, _CMP_UNORD_Q); }
  static inline M eq(R a, R b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  static inline M mask_or(M a, M b) { return _mm256_or_ps(a, b); }
  static inline bool any(M m) { return _mm256_movemask_ps(m) != 0; }
  static inline R select(M m, R a, R b) { return _mm256_blendv_ps(b, a, m); }
  static inline R and_mask(M m, R a) { return _mm256_and_ps(m, a); }

  // int32 lanes <-> float lanes (pooling's argmax indices): exact for |value| < 2^24.
  static inline R load_i32(const int32_t* p) {
    return _mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static inline R load_i32_n(const int32_t* p, int64_t n) {
    return _mm256_cvtepi32_ps(_mm256_maskload_epi32(p, tail_mask(n)));
  }
  static inline void store_i32(int32_t* p, R x) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_cvtps_epi32(x));
  }
  static inline void store_i32_n(int32_t* p, R x, int64_t n) {
    _mm256_maskstore_epi32(p, tail_mask(n), _mm256_cvtps_epi32(x));
  }

  static inline float reduce_add(R a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static inline float reduce_max(R a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

struct VD {
  using R = __m256d;
  static constexpr int W = 4;
  static inline R zero() { return _mm256_setzero_pd(); }
  static inline R cvt_lo(__m256 x) { return _mm256_cvtps_pd(_mm256_castps256_ps128(x)); }
  static inline R cvt_hi(__m256 x) { return _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)); }
  static inline R fma(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
  static inline void store(double* p, R x) { _mm256_storeu_pd(p, x); }
};

}  // namespace
}  // namespace sg
