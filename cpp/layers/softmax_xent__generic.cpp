// Softmax cross-entropy compiled for the generic path.
// Also defines the family's dispatch table: this file is always built, with baseline flags.
#include "simd/vec_generic.h"
#include "layers/softmax_xent_impl.h"

namespace sg {
const SoftmaxXentKernels softmax_xent_kernels__generic = {&softmax_xent<int64_t>, &softmax_xent<int32_t>, &softmax_xent_soft};
SG_DEFINE_DISPATCH(SoftmaxXentKernels, softmax_xent_kernels);
}
