// Activation kernels compiled for the avx512 path.
#include "simd/vec_avx512.h"
#include "layers/activations_impl.h"

namespace sg {
const ActivationKernels activation_kernels__avx512 = {&act_forward, &act_backward};
}
