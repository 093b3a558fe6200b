// NLL loss (see nll.h): one pass over the labels; the gradient is cleared in fixed chunks.
#include "layers/nll.h"

#include "common/parallel.h"

namespace sg {

template <class Label>
double nll_f32(float* d, float* row_loss, const float* x, const Label* labels, const float* w,
               int64_t B, int64_t C, int64_t ignore_index, float grad_scale) {
  double total = 0.0;
  for (int64_t i = 0; i < B; ++i) {
    const int64_t y = labels[i];
    double l = 0.0;
    if (y != ignore_index) l = -(w ? static_cast<double>(w[y]) : 1.0) * x[i * C + y];
    total += l;
    if (row_loss) row_loss[i] = static_cast<float>(l);
  }
  if (d) {  // after the loss: d may be x itself
    parallel_chunks(B * C, 1 << 14, [&](int64_t lo, int64_t hi) {
      for (int64_t j = lo; j < hi; ++j) d[j] = 0.0f;
    });
    for (int64_t i = 0; i < B; ++i) {
      const int64_t y = labels[i];
      if (y != ignore_index) d[i * C + y] = -grad_scale * (w ? w[y] : 1.0f);
    }
  }
  return total;
}

template double nll_f32<int64_t>(float*, float*, const float*, const int64_t*, const float*,
                                 int64_t, int64_t, int64_t, float);
template double nll_f32<int32_t>(float*, float*, const float*, const int32_t*, const float*,
                                 int64_t, int64_t, int64_t, float);

}  // namespace sg
