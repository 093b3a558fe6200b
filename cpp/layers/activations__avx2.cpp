// Activation kernels compiled for the avx2 path.
#include "simd/vec_avx2.h"
#include "layers/activations_impl.h"

namespace sg {
const ActivationKernels activation_kernels__avx2 = {&act_forward, &act_backward};
}
