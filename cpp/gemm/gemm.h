// Portable GEMM entry: C = act(alpha * op(A) op(B) + beta * C + bias), row-major, float32.
// Shape legend: op(A) is (m, k), op(B) is (k, n), C is (m, n); bias is (n,) or null.
// beta == 0 writes C without reading it. Results do not depend on the thread count.
// Under bf16 matmul precision (matmul_precision.h) op(A) and op(B) are rounded to bf16 while
// packed (A is then always packed) and the products accumulate in fp32.
#pragma once
#include <cstdint>

#include "common/activation.h"

namespace sg {

// True when gemm_f32 takes the small-matrix (sup) path for these shapes (never thread-dependent).
bool gemm_uses_sup(bool trans_a, int64_t m, int64_t lda);

// The per-thread scratch gemm_f32 grows for these shapes, in bytes: the B panel of the calling
// thread (shared by the team under an M split), and each of `threads` team members' A block and
// own B micropanels. The buffers are thread-local and reused, so a model's GEMM workspace is the
// maximum of each over its calls, not the sum. lda as the driver receives it (it picks the path).
struct GemmWorkspace {
  int64_t threads = 0;         // team size the call runs with (1 below the parallel cut)
  int64_t b_shared_bytes = 0;  // calling thread only, under an M split only
  int64_t a_bytes = 0;         // each team member
  int64_t b_own_bytes = 0;     // each team member (0 under an M split)
};
GemmWorkspace gemm_workspace(bool trans_a, int64_t m, int64_t n, int64_t k, int64_t lda,
                             int64_t threads);

// What the active ISA's GEMM plans with: register tile, both paths' blocking and the driver's
// shape rules (parallel cut, sup row limit, M-split threshold). Read-only, for tests that derive
// their expectations from the ISA in use instead of assuming one.
struct GemmConstants {
  int64_t mr, nr;
  int64_t packed_mc, packed_kc, packed_nc;
  int64_t sup_mc, sup_kc, sup_nc;
  int64_t parallel_min_macs;              // m*n*k below this runs on one thread
  int64_t sup_max_rows;                   // see gemm_uses_sup
  int64_t m_split_min_tiles_per_thread;   // M is split when ceil(m/mr) >= this * threads
};
GemmConstants gemm_constants();

// An operand gathered by a callback instead of read from a matrix (implicit GEMM: the conv
// family packs its im2col straight from the image, never materialising it). pack writes
// exactly what the ISA's packers would. For A (width = MR): rows [idx0, idx0 + count), count
// <= MR, over k [p0, p0 + kc) into one k-major MR-interleaved micropanel, rows past count
// zero. For B (width = NR): columns [idx0, idx0 + count), any count, over the same k range into
// ceil(count / NR) consecutive k-major NR-column micropanels, columns past count zero.
// A gathered A always takes the packed path: size its scratch as gemm_workspace(true, ...).
// pack writes float32 as it is: under bf16 precision the driver rounds (or converts for a native
// bf16 kernel) the micropanels after pack wrote them.
struct GemmPackSource {
  void (*pack)(const void* ctx, int64_t idx0, int64_t count, int64_t p0, int64_t kc,
               int64_t width, float* dst);
  const void* ctx;
};

// The k block the packed path splits a depth k into, and whether a product of these shapes runs
// on a thread team: for drivers that run the microkernels themselves (the conv family's
// indirect GEMM) and must round and split as gemm_f32 would.
int64_t gemm_packed_k_block(int64_t k);
bool gemm_goes_parallel(int64_t m, int64_t n, int64_t k);
// The calling thread's shared-B buffer (GemmWorkspace::b_shared_bytes), at least `floats` long:
// such a driver packs its B there, so the accounting's maximum over calls covers it.
float* gemm_caller_b_panel(int64_t floats);

// act: Activation::none or Activation::relu, the only ones the epilogue fuses.
void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
              int64_t ldc, const float* bias, Activation act);

// gemm_f32 with either operand gathered: a non-null a_src (b_src) replaces a, lda, trans_a
// (b, ldb, trans_b). Same blocking, same per-element FMA order, same thread independence.
void gemm_f32_src(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const GemmPackSource* a_src, const float* b,
                  int64_t ldb, const GemmPackSource* b_src, float beta, float* c, int64_t ldc,
                  const float* bias, Activation act);

}  // namespace sg
