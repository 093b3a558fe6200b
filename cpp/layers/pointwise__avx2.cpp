// Elementwise layer kernels compiled for the avx2 path.
#include "simd/vec_avx2.h"
#include "layers/pointwise_impl.h"

namespace sg {
const PointwiseKernels pointwise_kernels__avx2 = {&pw_add, &pw_dropout};
}
