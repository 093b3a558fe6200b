// Elementwise losses compiled for the avx512 path.
#include "simd/vec_avx512.h"
#include "layers/elem_loss_impl.h"

namespace sg {
const ElemLossKernels elem_loss_kernels__avx512 = {&elem_loss_chunk};
}
