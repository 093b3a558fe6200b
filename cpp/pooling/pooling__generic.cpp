// Pooling kernels compiled for the generic path.
// Also defines the family's dispatch table: this file is always built, with baseline flags.
#include "simd/vec_generic.h"
#include "pooling/pooling_impl.h"

namespace sg {
const PoolingKernels pooling_kernels__generic = {&pool_max_forward, &pool_max_backward,
                                              &pool_avg_forward, &pool_avg_backward};
SG_DEFINE_DISPATCH(PoolingKernels, pooling_kernels);
}
