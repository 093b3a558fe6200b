// BatchNorm1d kernels compiled for the generic path.
// Also defines the family's dispatch table: this file is always built, with baseline flags.
#include "simd/vec_generic.h"
#include "layers/batchnorm_impl.h"

namespace sg {
const BatchNormKernels batchnorm_kernels__generic = {&bn_forward_train, &bn_forward_eval,
                                                  &bn_backward};
SG_DEFINE_DISPATCH(BatchNormKernels, batchnorm_kernels);
}
