// Pooling kernels compiled for the avx2 path.
#include "simd/vec_avx2.h"
#include "pooling/pooling_impl.h"

namespace sg {
const PoolingKernels pooling_kernels__avx2 = {&pool_max_forward, &pool_max_backward,
                                              &pool_avg_forward, &pool_avg_backward};

}
