// bfloat16 rounding: the one rounding every bf16 GEMM path applies to its inputs (the reference
// path in place, on the fp32 panels; the native paths while converting them to the bf16 pair
// layouts below), so all paths multiply the same bf16 values. Round to nearest, ties to even,
// on the bit pattern: subnormals round like normals (no flush), a value past the largest bf16
// becomes inf, inf stays inf and NaN stays a (quiet) NaN of the same sign.
#pragma once
#include <cstdint>
#include <cstring>

namespace sg {

// The upper 16 bits of x rounded to bf16 (RNE).
inline uint16_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u | 0x00400000u) >> 16);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// x rounded to the nearest bf16 value, as a float.
inline float bf16_round(float x) {
  const uint32_t u = static_cast<uint32_t>(bf16_bits(x)) << 16;
  float y;
  std::memcpy(&y, &u, sizeof y);
  return y;
}

inline void bf16_round_inplace(float* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) p[i] = bf16_round(p[i]);
}

// The pair ("VNNI") layout of vdpbf16ps and tdpbf16ps: a k-major fp32 panel of `width`
// interleaved rows/columns (src[p * width + j], kc k steps) becomes `pairs` k pairs of 32-bit
// words, dst[q * width + j] = bf16(src[2q][j]) | bf16(src[2q + 1][j]) << 16; k steps past kc
// (the odd last one, the padding up to `pairs`) are zero.
inline void bf16_pack_pairs(const float* src, int64_t width, int64_t kc, int64_t pairs,
                            uint32_t* dst) {
  for (int64_t q = 0; q < pairs; ++q) {
    const int64_t p = 2 * q;
    for (int64_t j = 0; j < width; ++j) {
      const uint32_t lo = p < kc ? bf16_bits(src[p * width + j]) : 0u;
      const uint32_t hi = p + 1 < kc ? bf16_bits(src[(p + 1) * width + j]) : 0u;
      dst[q * width + j] = lo | hi << 16;
    }
  }
}

}  // namespace sg
