// Linear-layer drivers: the forward GEMM with fused bias, and the backward's two GEMMs plus
// the bias column sum. No ISA code here (the GEMM and colsum dispatch themselves).
#include "layers/linear.h"

namespace sg {

void linear_forward_f32(float* y, const float* x, const float* w, const float* b, int64_t batch,
                        int64_t in, int64_t out, Activation act) {
  // y (batch, out) = x (batch, in) * w^T (in, out) + b
  gemm_f32(false, true, batch, out, in, 1.0f, x, in, w, in, 0.0f, y, out, b, act);
}

void linear_backward_f32(float* dx, float* dw, float* db, const float* dy, const float* x,
                         const float* w, int64_t batch, int64_t in, int64_t out, float beta_w,
                         float beta_b) {
  // dw (out, in) = dy^T (out, batch) * x (batch, in) + beta_w dw; first, so that dx may be
  // written over x (a caller whose input is dead after this backward saves a buffer).
  gemm_f32(true, false, out, in, batch, 1.0f, dy, out, x, in, beta_w, dw, in, nullptr,
           Activation::none);
  if (db) linear_kernels().colsum(db, dy, batch, out, beta_b);
  // dx (batch, in) = dy (batch, out) * w (out, in)
  if (dx) gemm_f32(false, false, batch, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in, nullptr,
                   Activation::none);
}

GemmScratch linear_scratch(int64_t batch, int64_t in, int64_t out, bool input_grad,
                           int64_t threads) {
  // The same (trans_a, m, n, k, lda) as the gemm_f32 calls above.
  GemmScratch s;
  s.add(gemm_workspace(false, batch, out, in, in, threads));
  s.add(gemm_workspace(true, out, in, batch, out, threads));
  if (input_grad) s.add(gemm_workspace(false, batch, in, out, out, threads));
  return s;
}

}  // namespace sg
