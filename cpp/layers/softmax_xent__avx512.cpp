// Softmax cross-entropy compiled for the avx512 path.
#include "simd/vec_avx512.h"
#include "layers/softmax_xent_impl.h"

namespace sg {
const SoftmaxXentKernels softmax_xent_kernels__avx512 = {&softmax_xent<int64_t>, &softmax_xent<int32_t>, &softmax_xent_soft};
}
