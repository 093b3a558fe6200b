// LayerNorm kernels compiled for the avx2 path.
#include "simd/vec_avx2.h"
#include "layers/layernorm_impl.h"

namespace sg {
const LayerNormKernels layernorm_kernels__avx2 = {&ln_forward, &ln_backward};
}
