// Layout conversion compiled for the generic path (a scalar 8x8 block).
// Also defines the family's dispatch table: this file is always built, with baseline flags.
#include <cstdint>

namespace sg {
namespace {
inline void transpose8x8(float* dst, const float* src, int64_t ldd, int64_t lds) {
  for (int64_t j = 0; j < 8; ++j) {
    for (int64_t i = 0; i < 8; ++i) dst[j * ldd + i] = src[i * lds + j];
  }
}
}  // namespace
}  // namespace sg

#include "layout/transpose_impl.h"

namespace sg {
const LayoutKernels layout_kernels__generic = {&layout_transpose_tile};
SG_DEFINE_DISPATCH(LayoutKernels, layout_kernels);
}  // namespace sg
