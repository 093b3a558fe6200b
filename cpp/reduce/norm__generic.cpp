// Norm chunk kernels compiled for the generic path.
#include "simd/vec_generic.h"
#include "reduce/norm_impl.h"

namespace sg {
const NormKernels norm_kernels__generic = {&sumsq_lanes, &absmax};
}
