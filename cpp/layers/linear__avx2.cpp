// Linear-layer kernels compiled for the avx2 path.
#include "simd/vec_avx2.h"
#include "layers/linear_impl.h"

namespace sg {
const LinearKernels linear_kernels__avx2 = {&linear_colsum};
}
