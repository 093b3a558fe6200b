// FMA peak probe for the generic path. Portable: 12 4-lane chains (multiply + add; no FMA assumed).
// Also defines the family's dispatch table: this file is always built, with baseline flags.
#include "simd/vec_generic.h"
#include "gemm/fma_peak.h"
#include "gemm/fma_peak_impl.h"

namespace sg {
const FmaPeakFn fma_peak__generic = &fma_peak_impl<12>;
SG_DEFINE_DISPATCH(FmaPeakFn, fma_peak);
}
