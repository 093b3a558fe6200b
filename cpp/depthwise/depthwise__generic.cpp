// Depthwise convolution row kernels compiled for the generic path.
// Also defines the family's dispatch table: this file is always built, with baseline flags.
#include "simd/vec_generic.h"
#include "depthwise/depthwise_impl.h"

namespace sg {
const DepthwiseKernels depthwise_kernels__generic = {&dw_forward_row, &dw_input_grad_row,
                                                   &dw_weight_grad_row};
SG_DEFINE_DISPATCH(DepthwiseKernels, depthwise_kernels);
}  // namespace sg
