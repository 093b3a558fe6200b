// Elementwise layer kernels compiled for the generic path.
// Also defines the family's dispatch table: this file is always built, with baseline flags.
#include "simd/vec_generic.h"
#include "layers/pointwise_impl.h"

namespace sg {
const PointwiseKernels pointwise_kernels__generic = {&pw_add, &pw_dropout};
SG_DEFINE_DISPATCH(PointwiseKernels, pointwise_kernels);
}
