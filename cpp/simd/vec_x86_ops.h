// The V operations whose AVX2 and AVX-512 intrinsics differ only in the register width: one
// copy, expanded inside vec_avx2.h's and vec_avx512.h's struct V with the intrinsics' prefix
// P (_mm256 / _mm512) and width B (256 / 512), so each V still defines every operation itself
// (same inline functions, same code). Include from those two headers only.
#pragma once

// Loads, stores, arithmetic, and 2^n for integral n in [-126, 127].
#define SG_X86_V_ARITH(P, B)                                                                 \
  static inline R zero() { return P##_setzero_ps(); }                                        \
  static inline R set1(float x) { return P##_set1_ps(x); }                                   \
  static inline R load(const float* p) { return P##_loadu_ps(p); }                           \
  static inline void store(float* p, R x) { P##_storeu_ps(p, x); }                           \
  static inline R add(R a, R b) { return P##_add_ps(a, b); }                                 \
  static inline R sub(R a, R b) { return P##_sub_ps(a, b); }                                 \
  static inline R mul(R a, R b) { return P##_mul_ps(a, b); }                                 \
  static inline R div(R a, R b) { return P##_div_ps(a, b); }                                 \
  static inline R fma(R a, R b, R c) { return P##_fmadd_ps(a, b, c); }   /* a*b + c */       \
  static inline R fnma(R a, R b, R c) { return P##_fnmadd_ps(a, b, c); } /* c - a*b */       \
  static inline R max(R a, R b) { return P##_max_ps(a, b); }                                 \
  static inline R min(R a, R b) { return P##_min_ps(a, b); }                                 \
  static inline R sqrt(R a) { return P##_sqrt_ps(a); }                                       \
  static inline R neg(R a) { return P##_xor_ps(a, P##_set1_ps(-0.0f)); }                     \
  static inline R pow2(R n) {                                                                \
    __m##B##i i = P##_cvtps_epi32(n);                                                        \
    return P##_castsi##B##_ps(P##_slli_epi32(P##_add_epi32(i, P##_set1_epi32(127)), 23));    \
  }

// The ordered comparisons (false where either operand is NaN) and unord, through CMP
// (_mm256_cmp_ps / _mm512_cmp_ps_mask), each giving a V::M.
#define SG_X86_V_COMPARE(CMP)                                          \
  static inline M gt(R a, R b) { return CMP(a, b, _CMP_GT_OQ); }       \
  static inline M ge(R a, R b) { return CMP(a, b, _CMP_GE_OQ); }       \
  static inline M lt(R a, R b) { return CMP(a, b, _CMP_LT_OQ); }       \
  static inline M le(R a, R b) { return CMP(a, b, _CMP_LE_OQ); }       \
  static inline M unord(R a, R b) { return CMP(a, b, _CMP_UNORD_Q); }  \
  static inline M eq(R a, R b) { return CMP(a, b, _CMP_EQ_OQ); }
