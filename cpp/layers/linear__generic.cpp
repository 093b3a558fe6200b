// Linear-layer kernels compiled for the generic path.
#include "simd/vec_generic.h"
#include "layers/linear_impl.h"

namespace sg {
const LinearKernels linear_kernels__generic = {&linear_colsum};
}
