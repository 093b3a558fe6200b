// Softmax kernels compiled for the avx2 path.
#include "simd/vec_avx2.h"
#include "layers/softmax_impl.h"

namespace sg {
const SoftmaxKernels softmax_kernels__avx2 = {&softmax_forward, &softmax_backward};
}
