// Linear-layer kernels compiled for the avx512 path.
#include "simd/vec_avx512.h"
#include "layers/linear_impl.h"

namespace sg {
const LinearKernels linear_kernels__avx512 = {&linear_colsum};
}
