// BatchNorm1d kernels compiled for the avx2 path.
#include "simd/vec_avx2.h"
#include "layers/batchnorm_impl.h"

namespace sg {
const BatchNormKernels batchnorm_kernels__avx2 = {&bn_forward_train, &bn_forward_eval,
                                                  &bn_backward};
}
