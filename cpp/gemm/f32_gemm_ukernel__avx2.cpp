// AVX2+FMA GEMM microkernel: 6 x 16 (12 ymm accumulators + 2 B vectors + 1 broadcast), as BLIS
// haswell. Blocking for Zen 3 (32 KiB L1d, 512 KiB L2 per core), chosen by measurement:
// KC 256/320/384/512 x MC 96/120/144 measured within noise of each other (1 thread, 1024^3
// and MLP shapes); NC 1024 measured level with 4080 at 2 threads and keeps each thread's
// packed B panel at 1.5 MiB instead of up to 6 MiB (it counts in a training step's peak).
#include "simd/vec_avx2.h"
#include "gemm/f32_gemm_ukernel_impl.h"

namespace sg {
const GemmUkernel f32_gemm_ukernel__avx2 = {
    6, 16, {96, 384, 1024}, {96, 384, 1024}, SG_GEMM_UKERNELS(6, 2)};
}
