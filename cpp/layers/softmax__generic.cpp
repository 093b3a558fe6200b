// Softmax kernels compiled for the generic path.
// Also defines the family's dispatch table: this file is always built, with baseline flags.
#include "simd/vec_generic.h"
#include "layers/softmax_impl.h"

namespace sg {
const SoftmaxKernels softmax_kernels__generic = {&softmax_forward, &softmax_backward};
SG_DEFINE_DISPATCH(SoftmaxKernels, softmax_kernels);
}
