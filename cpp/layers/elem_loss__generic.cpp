// Elementwise losses compiled for the generic path.
// Also defines the family's dispatch table: this file is always built, with baseline flags.
#include "simd/vec_generic.h"
#include "layers/elem_loss_impl.h"

namespace sg {
const ElemLossKernels elem_loss_kernels__generic = {&elem_loss_chunk};
SG_DEFINE_DISPATCH(ElemLossKernels, elem_loss_kernels);
}
