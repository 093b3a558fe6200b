// Portable GEMM microkernel: 6 x 8 over 4-lane vectors (12 xmm accumulators on SSE2).
// Also defines the family's dispatch table: this file is always built, with baseline flags.
#include "simd/vec_generic.h"
#include "gemm/f32_gemm_ukernel_impl.h"

namespace sg {
const GemmUkernel f32_gemm_ukernel__generic = {
    6, 8, {96, 384, 1024}, {96, 384, 1024}, SG_GEMM_UKERNELS(6, 2)};
SG_DEFINE_DISPATCH(GemmUkernel, f32_gemm_ukernel);
}
