// GEMM driver: BLIS-style blocking (jc -> pc -> ic -> jr/ir) and two paths chosen from the
// shapes alone: "packed" (A and B copied into micropanels; large shapes) and "sup" (A read in
// place, B streamed in place unless transposed; the small and skinny shapes of MLP training,
// where packing is a large share of the work). OpenMP splits the (jr, ir) tiles of each block;
// K is never split and the blocking does not depend on the thread count, so results are
// bitwise identical for any number of threads. The ISA-specific part is the microkernel.
#include "gemm/gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>

#include "common/aligned_buffer.h"
#include "gemm/gemm_ukernel.h"

namespace sg {
namespace {

// Below this many multiply-adds (m*n*k) a parallel region costs more than it saves.
constexpr int64_t kParallelMinMacs = 64 * 64 * 64;

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

bool gemm_uses_sup(int64_t m, int64_t n, int64_t k) {
  static const int64_t tm = getenv("SG_SUP_M") ? atol(getenv("SG_SUP_M")) : 256;
  static const int64_t tn = getenv("SG_SUP_N") ? atol(getenv("SG_SUP_N")) : 128;
  static const int64_t tk = getenv("SG_SUP_K") ? atol(getenv("SG_SUP_K")) : 256;
  return m <= tm || n <= tn || k <= tk;
}

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
  const bool sup = gemm_uses_sup(m, n, k);
  const GemmBlocking& bl = sup ? uk.sup : uk.packed;
  static const int64_t eMC = getenv("SG_MC") ? atol(getenv("SG_MC")) : 0;
  static const int64_t eKC = getenv("SG_KC") ? atol(getenv("SG_KC")) : 0;
  const int64_t MC = eMC ? eMC : bl.mc, NC = bl.nc;
  // Equal k blocks (a multiple of 8 up to the last) rather than KC, KC, ..., small remainder:
  // a thin last block would pay a full pass over C for little work. Depends on k alone.
  const int64_t KC_max = eKC ? eKC : bl.kc;
  const int64_t n_pc = (k + KC_max - 1) / KC_max;
  const int64_t KC = std::min<int64_t>(KC_max, ((k + n_pc - 1) / n_pc + 7) / 8 * 8);
  // sup packs only the partial edge micropanels (one of each), and B when it is transposed
  // (op(B) rows are then not vector-loadable).
  static const bool packb_env = getenv("SG_SUP_PACKB") != nullptr;
  const bool pack_all_a = !sup, pack_all_b = !sup || trans_b || packb_env;
  const int64_t rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;

  // Pack buffers belong to the calling thread (callers may run gemm concurrently with the
  // GIL released); OpenMP workers share them. They grow once and are reused.
  thread_local AlignedBuffer a_buf, b_buf;
  const int64_t kc_max = std::min<int64_t>(KC, k);
  float* ap = a_buf.get(static_cast<size_t>(pack_all_a ? MC : MR) * kc_max);
  float* bp = b_buf.get(static_cast<size_t>(kc_max) *
                        (pack_all_b ? (std::min<int64_t>(NC, n) + NR - 1) / NR * NR : NR));

  const bool parallel = m * n * k >= kParallelMinMacs && omp_get_max_threads() > 1;
#pragma omp parallel if (parallel)
  {
    for (int64_t jc = 0; jc < n; jc += NC) {
      const int64_t nc = std::min(NC, n - jc);
      const int64_t n_jr = (nc + NR - 1) / NR;
      for (int64_t pc = 0; pc < k; pc += KC) {
        const int64_t kc = std::min(KC, k - pc);
        const bool first = pc == 0, last = pc + kc == k;
        const GemmEpilogue ep{alpha, first ? beta : 1.0f, nullptr, last && relu};
        if (pack_all_b) {
#pragma omp for schedule(static)
          for (int64_t jr = 0; jr < n_jr; ++jr) {
            uk.pack_b(trans_b, b, ldb, pc, kc, jc + jr * NR, std::min<int64_t>(NR, nc - jr * NR),
                      bp + jr * NR * kc);
          }
        } else if (nc % NR) {
#pragma omp single
          uk.pack_b(trans_b, b, ldb, pc, kc, jc + (n_jr - 1) * NR, nc % NR, bp);
        }
        for (int64_t ic = 0; ic < m; ic += MC) {
          const int64_t mc = std::min(MC, m - ic);
          const int64_t n_ir = (mc + MR - 1) / MR;
          if (pack_all_a) {
#pragma omp for schedule(static)
            for (int64_t ir = 0; ir < n_ir; ++ir) {
              uk.pack_a(trans_a, a, lda, ic + ir * MR, std::min<int64_t>(MR, mc - ir * MR), pc, kc,
                        ap + ir * MR * kc);
            }
          } else if (mc % MR) {
#pragma omp single
            uk.pack_a(trans_a, a, lda, ic + (n_ir - 1) * MR, mc % MR, pc, kc, ap);
          }
          // jr-major order: each thread takes a contiguous run of B micropanels (an N split)
          // and walks the A block (L2-resident) under each one (L1-resident).
#pragma omp for schedule(static)
          for (int64_t t = 0; t < n_jr * n_ir; ++t) {
            const int64_t jr = t / n_ir, ir = t % n_ir;
            const int64_t j = jc + jr * NR, i = ic + ir * MR;
            const int64_t mr = std::min<int64_t>(MR, m - i), nr = std::min<int64_t>(NR, n - j);
            const bool a_packed = pack_all_a || mr < MR, b_packed = pack_all_b || nr < NR;
            const float* at = pack_all_a ? ap + ir * MR * kc : a_packed ? ap : a + i * rsa + pc * csa;
            const float* bt = pack_all_b ? bp + jr * NR * kc : b_packed ? bp : b + pc * ldb + j;
            GemmEpilogue tile_ep = ep;
            tile_ep.bias = last && bias ? bias + j : nullptr;
            uk.fn[a_packed][b_packed](kc, at, rsa, csa, bt, ldb, c + i * ldc + j, ldc, mr, nr,
                                      tile_ep);
          }
        }
      }
    }
  }
}

}  // namespace sg
