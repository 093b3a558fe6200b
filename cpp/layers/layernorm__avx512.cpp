// LayerNorm kernels compiled for the avx512 path.
#include "simd/vec_avx512.h"
#include "layers/layernorm_impl.h"

namespace sg {
const LayerNormKernels layernorm_kernels__avx512 = {&ln_forward, &ln_backward};
}
