// Depthwise convolution row kernels compiled for the avx512 path.
#include "simd/vec_avx512.h"
#include "depthwise/depthwise_impl.h"

namespace sg {
const DepthwiseKernels depthwise_kernels__avx512 = {&dw_forward_row, &dw_input_grad_row,
                                                   &dw_weight_grad_row};
}  // namespace sg
