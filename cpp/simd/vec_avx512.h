// V: the 16-lane float vector for AVX-512 (F/VL/BW/DQ) translation units. Include in *__avx512.cpp
// only, before a family's *_impl.h. Everything lives in an anonymous namespace so that the
// same names compiled with other flags in other files never meet at link time.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "simd/vec_x86_ops.h"

namespace sg {
namespace {

constexpr const char* kIsaName = "avx512";

struct V {
  using R = __m512;
  using M = __mmask16;
  static constexpr int W = 16;
  static inline M tail_mask(int64_t n) { return static_cast<M>((1u << n) - 1u); }

  // The one interface the *_impl.h kernels are written against (as vec_avx2.h and
  // vec_generic.h): what only the width tells apart from AVX2 comes from vec_x86_ops.h.
  SG_X86_V_ARITH(_mm512, 512)
  SG_X86_V_COMPARE(_mm512_cmp_ps_mask)
  // n in [0, W): lanes past n read as 0 and are never touched.
  static inline R load_n(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(tail_mask(n), p); }
  static inline void store_n(float* p, R x, int64_t n) { _mm512_mask_storeu_ps(p, tail_mask(n), x); }
  static inline void stream(float* p, R x) { _mm512_storeu_ps(p, x); }
  static inline R abs(R a) { return _mm512_abs_ps(a); }
  static inline R round(R a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

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
