// Norm chunk kernels compiled for the avx512 path.
#include "simd/vec_avx512.h"
#include "reduce/norm_impl.h"

namespace sg {
const NormKernels norm_kernels__avx512 = {&sumsq_lanes, &absmax};
}
