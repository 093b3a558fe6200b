// FMA peak probe for the avx512 path. AVX-512: 24 zmm chains (32 registers).
#include "simd/vec_avx512.h"
#include "gemm/fma_peak.h"
#include "gemm/fma_peak_impl.h"

namespace sg {
const FmaPeakFn fma_peak__avx512 = &fma_peak_impl<24>;
}
