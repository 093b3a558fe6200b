// Softmax cross-entropy compiled for the avx2 path.
#include "simd/vec_avx2.h"
#include "layers/softmax_xent_impl.h"

namespace sg {
const SoftmaxXentKernels softmax_xent_kernels__avx2 = {&softmax_xent<int64_t>, &softmax_xent<int32_t>, &softmax_xent_soft};
}
