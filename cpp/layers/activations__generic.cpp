// Activation kernels compiled for the generic path.
#include "simd/vec_generic.h"
#include "layers/activations_impl.h"

namespace sg {
const ActivationKernels activation_kernels__generic = {&act_forward, &act_backward};
}
