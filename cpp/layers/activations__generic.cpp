// Activation kernels compiled for the generic path.
// Also defines the family's dispatch table: this file is always built, with baseline flags.
#include "simd/vec_generic.h"
#include "layers/activations_impl.h"

namespace sg {
const ActivationKernels activation_kernels__generic = {&act_forward, &act_backward};
SG_DEFINE_DISPATCH(ActivationKernels, activation_kernels);
}
