// Norm chunk kernels compiled for the generic path.
// Also defines the family's dispatch table: this file is always built, with baseline flags.
#include "simd/vec_generic.h"
#include "reduce/norm_impl.h"

namespace sg {
const NormKernels norm_kernels__generic = {&sumsq_lanes, &absmax};
SG_DEFINE_DISPATCH(NormKernels, norm_kernels);
}
