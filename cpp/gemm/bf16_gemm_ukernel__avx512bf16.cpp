// AVX512-BF16 GEMM microkernel (vdpbf16ps, _mm512_dpbf16_ps): the AVX-512 table's 14 x 32 tile
// (28 zmm accumulators), k two steps at a time. Both panels are in the pair layout (bf16.h):
// A's word (q, r) holds row r's k steps 2q and 2q + 1 and is broadcast; B's words (q, j) are
// loaded 16 columns at a time. vdpbf16ps adds both products of a pair into the fp32 lane (odd k
// first, denormal bf16 inputs read as zero, FTZ): not the reference path's k-ordered FMA
// chain, so it is held to the fp32 accumulation error bound, not to equality. Written against
// the documented instruction semantics; called only where CPUID says AVX512_BF16.
#include "gemm/bf16_ukernel_impl.h"

namespace sg {
namespace {

int64_t pair_depth(int64_t kc) { return (kc + 1) / 2; }

void convert_a(const float* src, int64_t kc, float* dst) {
  bf16_pack_pairs(src, kMR, kc, pair_depth(kc), reinterpret_cast<uint32_t*>(dst));
}

void bf16_ukernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t mr,
                  int64_t nr, const GemmEpilogue& ep) {
  const uint32_t* ap = reinterpret_cast<const uint32_t*>(a);
  const uint32_t* bp = reinterpret_cast<const uint32_t*>(b);
  f32_gemm_prefetch_c<kMR, kNR>(c, ldc, mr);
  V::R acc[kMR][kNRV];
  f32_gemm_zero<kMR, kNRV>(acc);
  const int64_t pairs = pair_depth(kc);
#pragma GCC unroll 2
  for (int64_t q = 0; q < pairs; ++q, ap += kMR, bp += kNR) {
    __builtin_prefetch(ap + 8 * kMR);
    __m512bh bv[kNRV];
#pragma GCC unroll 2
    for (int v = 0; v < kNRV; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(bp + v * 16);
#pragma GCC unroll 14
    for (int r = 0; r < kMR; ++r) {
      const __m512bh ar = (__m512bh)_mm512_set1_epi32(static_cast<int>(ap[r]));
#pragma GCC unroll 2
      for (int v = 0; v < kNRV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], ar, bv[v]);
    }
  }
  f32_gemm_epilogue<kMR, kNRV>(acc, c, ldc, mr, nr, ep);
}

}  // namespace

SG_BF16_UKERNEL(bf16_gemm_ukernel__avx512bf16, pair_depth);

}  // namespace sg
