// GEMM driver: BLIS-style blocking (jc -> pc -> ic -> jr/ir), packing that absorbs both
// transposes, OpenMP over the (jr, ir) tiles of each block. K is never split across threads
// and the blocking does not depend on the thread count, so results are bitwise identical for
// any number of threads. The ISA-specific part is only the microkernel (gemm_ukernel.h).
#include "gemm/gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "common/aligned_buffer.h"
#include "gemm/gemm_ukernel.h"

namespace sg {
namespace {

// Below this many multiply-adds a parallel region costs more than it saves.
constexpr int64_t kParallelMinFlops = 2 * 64 * 64 * 64;

// A block: rows [i0, i0+mc) of op(A), k range [p0, p0+kc) -> MR-row micropanels, k-major.
void pack_a(bool trans, const float* a, int64_t lda, int64_t i0, int64_t mc, int64_t p0,
            int64_t kc, int MR, float* dst, int64_t panel) {
  const int64_t r0 = panel * MR;
  const int64_t rows = std::min<int64_t>(MR, mc - r0);
  float* d = dst + panel * MR * kc;
  if (trans) {  // op(A)(i, p) = a[p * lda + i]: each k step is a contiguous run of rows
    for (int64_t p = 0; p < kc; ++p) {
      const float* s = a + (p0 + p) * lda + i0 + r0;
      int64_t r = 0;
      for (; r < rows; ++r) d[p * MR + r] = s[r];
      for (; r < MR; ++r) d[p * MR + r] = 0.0f;
    }
  } else {  // op(A)(i, p) = a[i * lda + p]
    for (int64_t r = 0; r < rows; ++r) {
      const float* s = a + (i0 + r0 + r) * lda + p0;
      for (int64_t p = 0; p < kc; ++p) d[p * MR + r] = s[p];
    }
    for (int64_t r = rows; r < MR; ++r)
      for (int64_t p = 0; p < kc; ++p) d[p * MR + r] = 0.0f;
  }
}

// B panel: k range [p0, p0+kc), columns [j0, j0+nc) -> NR-column micropanels, k-major.
void pack_b(bool trans, const float* b, int64_t ldb, int64_t p0, int64_t kc, int64_t j0,
            int64_t nc, int NR, float* dst, int64_t panel) {
  const int64_t c0 = panel * NR;
  const int64_t cols = std::min<int64_t>(NR, nc - c0);
  float* d = dst + panel * NR * kc;
  if (!trans) {  // op(B)(p, j) = b[p * ldb + j]
    for (int64_t p = 0; p < kc; ++p) {
      const float* s = b + (p0 + p) * ldb + j0 + c0;
      int64_t c = 0;
      for (; c < cols; ++c) d[p * NR + c] = s[c];
      for (; c < NR; ++c) d[p * NR + c] = 0.0f;
    }
  } else {  // op(B)(p, j) = b[j * ldb + p]
    for (int64_t c = 0; c < cols; ++c) {
      const float* s = b + (j0 + c0 + c) * ldb + p0;
      for (int64_t p = 0; p < kc; ++p) d[p * NR + c] = s[p];
    }
    for (int64_t c = cols; c < NR; ++c)
      for (int64_t p = 0; p < kc; ++p) d[p * NR + c] = 0.0f;
  }
}

// k == 0: C = act(beta * C + bias), with beta == 0 never reading C.
void epilogue_only(int64_t m, int64_t n, float beta, float* c, int64_t ldc, const float* bias,
                   bool relu) {
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    for (int64_t j = 0; j < n; ++j) {
      float x = beta == 0.0f ? 0.0f : beta * row[j];
      if (bias) x += bias[j];
      if (relu) x = x > 0.0f || x != x ? x : 0.0f;
      row[j] = x;
    }
  }
}

}  // namespace

void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
              int64_t ldc, const float* bias, Activation act) {
  if (m == 0 || n == 0) return;
  const bool relu = act == Activation::relu;
  if (k == 0) {
    epilogue_only(m, n, beta, c, ldc, bias, relu);
    return;
  }
  const GemmUkernel& uk = gemm_ukernel();
  const int MR = uk.mr, NR = uk.nr;
  const int64_t MC = uk.mc, KC = uk.kc, NC = uk.nc;

  // Pack buffers belong to the calling thread (callers may run gemm concurrently with the
  // GIL released); OpenMP workers share them.
  thread_local AlignedBuffer a_buf, b_buf;
  float* ap = a_buf.get(static_cast<size_t>(MC) * KC);
  float* bp = b_buf.get(static_cast<size_t>(std::min<int64_t>(KC, k)) *
                        ((std::min<int64_t>(NC, n) + NR - 1) / NR) * NR);

  const bool parallel = m * n * k >= kParallelMinFlops && omp_get_max_threads() > 1;
#pragma omp parallel if (parallel)
  {
    for (int64_t jc = 0; jc < n; jc += NC) {
      const int64_t nc = std::min(NC, n - jc);
      const int64_t n_jr = (nc + NR - 1) / NR;
      for (int64_t pc = 0; pc < k; pc += KC) {
        const int64_t kc = std::min(KC, k - pc);
        const bool first = pc == 0, last = pc + kc == k;
        GemmEpilogue ep{alpha, first ? beta : 1.0f, nullptr, last && relu};
#pragma omp for schedule(static)
        for (int64_t jr = 0; jr < n_jr; ++jr) pack_b(trans_b, b, ldb, pc, kc, jc, nc, NR, bp, jr);
        for (int64_t ic = 0; ic < m; ic += MC) {
          const int64_t mc = std::min(MC, m - ic);
          const int64_t n_ir = (mc + MR - 1) / MR;
#pragma omp for schedule(static)
          for (int64_t ir = 0; ir < n_ir; ++ir) pack_a(trans_a, a, lda, ic, mc, pc, kc, MR, ap, ir);
#pragma omp for schedule(static)
          for (int64_t t = 0; t < n_jr * n_ir; ++t) {
            const int64_t jr = t / n_ir, ir = t % n_ir;
            const int64_t j = jc + jr * NR, i = ic + ir * MR;
            GemmEpilogue tile_ep = ep;
            tile_ep.bias = last && bias ? bias + j : nullptr;
            uk.fn(kc, ap + ir * MR * kc, bp + jr * NR * kc, c + i * ldc + j, ldc,
                  std::min<int64_t>(MR, m - i), std::min<int64_t>(NR, n - j), tile_ep);
          }
        }
      }
    }
  }
}

}  // namespace sg
