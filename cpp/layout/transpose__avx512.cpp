// Layout conversion compiled for the avx512 path (the 8x8 block in registers).
#include "layout/transpose8x8_avx.h"
#include "layout/transpose_impl.h"

namespace sg {
const LayoutKernels layout_kernels__avx512 = {&layout_transpose_tile};
}
