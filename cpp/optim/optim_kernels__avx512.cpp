// Optimizer update kernels compiled for the avx512 path.
#include "simd/vec_avx512.h"
#include "optim/adagrad_impl.h"
#include "optim/adam_impl.h"
#include "optim/nadam_impl.h"
#include "optim/rmsprop_impl.h"
#include "optim/sgd_impl.h"

namespace sg {
const OptimKernels optim_kernels__avx512 = {&adam, &rmsprop, &sgd, &adagrad, &nadam, &scale_clamp};
}
