// AVX2+FMA GEMM microkernel: 6 x 16 (12 ymm accumulators + 2 B vectors + 1 broadcast), as BLIS
// haswell. Blocking for Zen 3 (32 KiB L1d, 512 KiB L2 per core), chosen by measurement.
#include "simd/vec_avx2.h"
#include "gemm/f32_gemm_ukernel_impl.h"

namespace sg {
const GemmUkernel f32_gemm_ukernel__avx2 = {
    6, 16, {96, 384, 4080}, {96, 384, 4080}, SG_GEMM_UKERNELS(6, 2)};
}
