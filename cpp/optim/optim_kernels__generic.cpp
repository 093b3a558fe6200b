// Optimizer update kernels compiled for the generic path.
#include "simd/vec_generic.h"
#include "optim/adam_impl.h"
#include "optim/rmsprop_impl.h"
#include "optim/sgd_impl.h"

namespace sg {
const OptimKernels optim_kernels__generic = {&adam, &rmsprop, &sgd, &scale_clamp};
}
