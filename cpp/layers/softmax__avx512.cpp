// Softmax kernels compiled for the avx512 path.
#include "simd/vec_avx512.h"
#include "layers/softmax_impl.h"

namespace sg {
const SoftmaxKernels softmax_kernels__avx512 = {&softmax_forward, &softmax_backward};
}
