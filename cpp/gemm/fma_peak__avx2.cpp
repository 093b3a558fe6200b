// FMA peak probe for the avx2 path. AVX2+FMA: 12 ymm chains (16 registers).
#include "simd/vec_avx2.h"
#include "gemm/fma_peak.h"
#include "gemm/fma_peak_impl.h"

namespace sg {
const FmaPeakFn fma_peak__avx2 = &fma_peak_impl<12>;
}
