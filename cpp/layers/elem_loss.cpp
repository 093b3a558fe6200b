// Driver for the elementwise losses: fixed chunks through chunked_reduce.h, so the sum does not
// depend on the thread count.
#include "layers/elem_loss.h"

#include "reduce/chunked_reduce.h"

namespace sg {

double elem_loss_f32(const ElemLossArgs& a, int64_t n) {
  const ElemLossKernels& k = elem_loss_kernels();
  return chunked_sum(n, [&](int64_t b, int64_t len) {
    double lanes[kReduceLanes] = {0};
    k.chunk(a, b, len, lanes);
    return sum_lanes(lanes);
  });
}

}  // namespace sg
