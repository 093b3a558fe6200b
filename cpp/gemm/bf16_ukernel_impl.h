// What the native bf16 microkernels (*__avx512bf16.cpp, *__amx.cpp) share: the AVX-512 fp32
// table's 14 x 32 tile, whose packers fill the micropanels they convert, the B conversion to
// the pair layout (k padded to the kernel's depth) and their table. Included once per such TU.
#pragma once
#include "simd/vec_avx512.h"
#include "gemm/f32_gemm_ukernel_impl.h"
#include "gemm/bf16.h"
#include "gemm/matmul_precision.h"

namespace sg {
namespace {

constexpr int kMR = 14, kNRV = 2, kNR = kNRV * 16;  // f32_gemm_ukernel__avx512's tile

template <int64_t (*Depth)(int64_t)>
void bf16_convert_b(const float* src, int64_t kc, float* dst) {
  bf16_pack_pairs(src, kNR, kc, Depth(kc), reinterpret_cast<uint32_t*>(dst));
}

}  // namespace
}  // namespace sg

// The kernel's table, from its TU's depth, convert_a and bf16_ukernel (in namespace sg).
#define SG_BF16_UKERNEL(table, depth)                                                     \
  extern const Bf16Ukernel table;                                                         \
  const Bf16Ukernel table = {kMR, kNR, &depth, &convert_a, &bf16_convert_b<&depth>, \
                             &bf16_ukernel}
