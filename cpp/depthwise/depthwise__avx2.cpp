// Depthwise convolution row kernels compiled for the avx2 path.
#include "simd/vec_avx2.h"
#include "depthwise/depthwise_impl.h"

namespace sg {
const DepthwiseKernels depthwise_kernels__avx2 = {&dw_forward_row, &dw_input_grad_row,
                                                   &dw_weight_grad_row};
}  // namespace sg
