// Optimizer update kernels compiled for the generic path.
// Also defines the family's dispatch table: this file is always built, with baseline flags.
#include "simd/vec_generic.h"
#include "optim/adagrad_impl.h"
#include "optim/adam_impl.h"
#include "optim/nadam_impl.h"
#include "optim/rmsprop_impl.h"
#include "optim/sgd_impl.h"

namespace sg {
const OptimKernels optim_kernels__generic = {&adam, &rmsprop, &sgd, &adagrad, &nadam, &scale_clamp};
SG_DEFINE_DISPATCH(OptimKernels, optim_kernels);
}
