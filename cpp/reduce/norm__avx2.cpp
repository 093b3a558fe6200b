// Norm chunk kernels compiled for the avx2 path.
#include "simd/vec_avx2.h"
#include "reduce/norm_impl.h"

namespace sg {
const NormKernels norm_kernels__avx2 = {&sumsq_lanes, &absmax};
}
