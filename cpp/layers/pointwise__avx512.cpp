// Elementwise layer kernels compiled for the avx512 path.
#include "simd/vec_avx512.h"
#include "layers/pointwise_impl.h"

namespace sg {
const PointwiseKernels pointwise_kernels__avx512 = {&pw_add, &pw_dropout};
}
