// V: the 8-lane float vector for AVX2+FMA translation units. Include in *__avx2.cpp only,
// before a family's *_impl.h. Anonymous namespace: see vec_avx512.h.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "simd/vec_x86_ops.h"

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

  // The one interface the *_impl.h kernels are written against (as vec_avx512.h and
  // vec_generic.h): what only the width tells apart from AVX-512 comes from vec_x86_ops.h.
  SG_X86_V_ARITH(_mm256, 256)
  SG_X86_V_COMPARE(_mm256_cmp_ps)
  static inline R load_n(const float* p, int64_t n) { return _mm256_maskload_ps(p, tail_mask(n)); }
  static inline void store_n(float* p, R x, int64_t n) { _mm256_maskstore_ps(p, tail_mask(n), x); }
  static inline R abs(R a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static inline R round(R a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

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
