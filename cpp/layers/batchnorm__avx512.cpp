// BatchNorm1d kernels compiled for the avx512 path.
#include "simd/vec_avx512.h"
#include "layers/batchnorm_impl.h"

namespace sg {
const BatchNormKernels batchnorm_kernels__avx512 = {&bn_forward_train, &bn_forward_eval,
                                                  &bn_backward};
}
