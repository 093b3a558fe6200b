// Elementwise losses compiled for the avx2 path.
#include "simd/vec_avx2.h"
#include "layers/elem_loss_impl.h"

namespace sg {
const ElemLossKernels elem_loss_kernels__avx2 = {&elem_loss_chunk};
}
