// LayerNorm kernels compiled for the generic path.
// Also defines the family's dispatch table: this file is always built, with baseline flags.
#include "simd/vec_generic.h"
#include "layers/layernorm_impl.h"

namespace sg {
const LayerNormKernels layernorm_kernels__generic = {&ln_forward, &ln_backward};
SG_DEFINE_DISPATCH(LayerNormKernels, layernorm_kernels);
}
