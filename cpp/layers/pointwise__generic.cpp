// Elementwise layer kernels compiled for the generic path.
#include "simd/vec_generic.h"
#include "layers/pointwise_impl.h"

namespace sg {
const PointwiseKernels pointwise_kernels__generic = {&pw_add, &pw_dropout, &pw_mse_chunk};
}
