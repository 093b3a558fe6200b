// Linear-layer kernels compiled for the generic path.
// Also defines the family's dispatch table: this file is always built, with baseline flags.
#include "simd/vec_generic.h"
#include "layers/linear_impl.h"

namespace sg {
const LinearKernels linear_kernels__generic = {&linear_colsum};
SG_DEFINE_DISPATCH(LinearKernels, linear_kernels);
}
