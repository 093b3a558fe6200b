// AVX-512 GEMM microkernel: 14 x 32 (28 zmm accumulators + 2 B vectors + 1 broadcast).
// Blocking for 48 KiB L1d / 1 MiB L2 (Zen 5): KC 384, below the 480 of AMD BLIS's Zen 5 config,
// leaves L2 room for C and the streams; NC 1024 as the AVX2 table (memory). Not runnable on the
// AVX2 dev machine.
#include "simd/vec_avx512.h"
#include "gemm/f32_gemm_ukernel_impl.h"

namespace sg {
const GemmUkernel f32_gemm_ukernel__avx512 = {
    14, 32, {14 * 24, 384, 1024}, {14 * 24, 384, 1024}, SG_GEMM_UKERNELS(14, 2)};
}
