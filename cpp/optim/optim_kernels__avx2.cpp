// Optimizer update kernels compiled for the avx2 path.
#include "simd/vec_avx2.h"
#include "optim/adagrad_impl.h"
#include "optim/adam_impl.h"
#include "optim/nadam_impl.h"
#include "optim/rmsprop_impl.h"
#include "optim/sgd_impl.h"

namespace sg {
const OptimKernels optim_kernels__avx2 = {&adam, &rmsprop, &sgd, &adagrad, &nadam, &scale_clamp};
}
