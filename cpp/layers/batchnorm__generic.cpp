// BatchNorm1d kernels compiled for the generic path.
#include "simd/vec_generic.h"
#include "layers/batchnorm_impl.h"

namespace sg {
const BatchNormKernels batchnorm_kernels__generic = {&bn_forward_train, &bn_forward_eval,
                                                  &bn_backward};
}
