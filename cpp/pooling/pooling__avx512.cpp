// Pooling kernels compiled for the avx512 path.
#include "simd/vec_avx512.h"
#include "pooling/pooling_impl.h"

namespace sg {
const PoolingKernels pooling_kernels__avx512 = {&pool_max_forward, &pool_max_backward,
                                              &pool_avg_forward, &pool_avg_backward};

}
