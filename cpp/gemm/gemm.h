// Portable GEMM entry: C = act(alpha * op(A) op(B) + beta * C + bias), row-major, float32.
// Shape legend: op(A) is (m, k), op(B) is (k, n), C is (m, n); bias is (n,) or null.
// beta == 0 writes C without reading it. Results do not depend on the thread count.
#pragma once
#include <cstdint>

namespace sg {

enum class Activation : int { none = 0, relu = 1 };

// True when gemm_f32 takes the small-matrix (sup) path for these shapes (never thread-dependent).
bool gemm_uses_sup(bool trans_a, int64_t m, int64_t lda);

void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
              int64_t ldc, const float* bias, Activation act);

}  // namespace sg
