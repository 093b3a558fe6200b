// GEMM driver: BLIS-style blocking (jc -> pc -> ic -> jr/ir) and two paths chosen from the
// shapes alone (never the thread count): "packed" (A and B copied into micropanels) and "sup"
// (A read in place, for the few-row untransposed A of MLP batches). Each thread owns one fixed
// rectangle of micro-tiles; K is never split and the blocking depends on shapes only, so the
// results are bitwise identical for any number of threads. The ISA part is the microkernel.
// Under bf16 precision (matmul_precision.h) every panel is rounded to bf16 as it is packed
// (finish_panel: the one place, for the ISA packers and the gathered sources alike), A is always
// packed, and a native bf16 kernel, where the CPU has one, reads its own panel layout.
#include "gemm/gemm.h"

#include <omp.h>

#include "common/parallel.h"

#include <algorithm>
#include <cassert>

#include "common/aligned_buffer.h"
#include "gemm/bf16.h"
#include "gemm/gemm_ukernel.h"
#include "gemm/matmul_precision.h"

namespace sg {
namespace {

// Below this many multiply-adds (m*n*k) a parallel region costs more than it saves. Back to
// back calls on the 2-core Zen 3 VM (forced parallel, NN, wall medians) put the cut at 64^3
// (48^3: 1 thread 39 GF/s vs 2 threads 24; 64^3: 48 vs 57-70), but that is with the workers
// still spinning from the call before. With the short spin steadygrad loads libgomp with
// (steadygrad/_omp.py) a region after a gap wakes sleeping workers, and scikit-learn-sized
// steps (batch 200, 64-100-10: GEMMs of 0.2-1.3M multiply-adds) ran faster on one thread than
// on two; at 128^3 a digits fit at 2 threads took 0.38 s against 0.47 s at 64^3 (medians of
// 9 fits, interleaved), while the S and M steps' GEMMs (4-200M) stay parallel.
constexpr int64_t kParallelMinMacs = 128 * 128 * 128;

// The small-matrix path's row limit (see gemm_uses_sup).
constexpr int64_t kSupMaxRows = 256;

// An M split needs at least this many MR-row micro-tiles per thread (see GemmPlan::m_split).
constexpr int64_t kMSplitMinTilesPerThread = 200;

// The blocking of one call, from the shapes alone; the driver and gemm_workspace() both size
// the scratch buffers from it, so the memory accounting cannot drift from what is allocated.
// Equal blocks of at most `max_block` (a multiple of `align`) covering `len`: a last block
// much thinner than the others would pay a whole pass (packing, a sweep over C) for little work.
inline int64_t equal_block(int64_t len, int64_t max_block, int64_t align) {
  if (len <= 0) return align;
  const int64_t blocks = (len + max_block - 1) / max_block;
  return std::min(max_block, ((len + blocks - 1) / blocks + align - 1) / align * align);
}

struct GemmPlan {
  int64_t mr, nr, m, n;
  bool sup;
  bool bf16;                   // inputs rounded to bf16 while packing
  const Bf16Ukernel* native;   // non-null: the native bf16 kernel and its panel layout
  int64_t mc, nc, kc;  // kc: the k block actually used (equal blocks, see gemm_plan)
  int64_t kc_max;      // the largest k block: min(kc, k)
  // Team rows: M is split only when each thread gets many micro-tile rows (large M), else
  // the threads split N and each packs its own B columns: no shared panel, no barrier.
  // Measured on Zen 3, 2 threads: the N split is 0-15% faster from m = 64 up to m = 1024
  // (1024^3: 126 vs 113 GF/s) and level at m = 512..4096 with large n.
  int64_t m_split(int64_t nth) const {
    const int64_t m_tiles = (m + mr - 1) / mr;
    return m_tiles >= kMSplitMinTilesPerThread * nth ? nth : 1;
  }
  // The column range [col0, col1) of thread t under an N split of tn threads, in whole
  // micropanels (the driver's split).
  int64_t col_start(int64_t t, int64_t tn) const {
    return std::min(n, (n + nr - 1) / nr * t / tn * nr);
  }
  // The widest column block any of the tn threads packs. Not the block of the widest range:
  // equal_block is not monotonic (2 NC columns are 2 blocks of NC, 2 NC + NR are 3 thinner
  // ones), so every range is looked at.
  int64_t own_block_max(int64_t tn) const {
    int64_t best = nr;
    for (int64_t t = 0; t < tn; ++t) {
      const int64_t cols = col_start(t + 1, tn) - col_start(t, tn);
      if (cols > 0) best = std::max(best, equal_block(cols, nc, nr));
    }
    return best;
  }
  // Floats per panel row (A) or column (B) for a k block of kc: kc, or the native layout's.
  int64_t depth(int64_t kc) const { return native ? native->depth(kc) : kc; }
  // A native kernel's panels are packed in fp32 into a per-thread stage (one micropanel), then
  // converted; it sits after the thread's A block.
  int64_t stage_floats() const { return native ? std::max(mr, nr) * kc_max : 0; }
  int64_t b_shared_floats() const { return depth(kc_max) * equal_block(n, nc, nr); }
  int64_t b_own_floats(int64_t tn) const { return depth(kc_max) * own_block_max(tn); }
  int64_t a_block_floats() const { return (sup ? mr : mc) * depth(kc_max); }
  int64_t a_floats() const { return a_block_floats() + stage_floats(); }
};

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

// The small-matrix path reads A in place (no A packing) and is kept where it measured faster
// than packing A: untransposed A (rows are contiguous k streams) with few rows. B is always
// packed: streaming it in place measured 2x slower at power-of-two leading dimensions (every
// k row of a micropanel lands in the same L1 set) and packing B costs only ~1/m of the work.
// An A whose rows are 4 KiB-aligned apart aliases the same way and is packed too.
// (Zen 3, 1 thread, batch 64/256 MLP shapes: A in place +2..10% where it is used.)
// Never under bf16 precision: A is rounded as it is packed.
static bool uses_sup(bool bf16, bool trans_a, int64_t m, int64_t lda) {
  return !bf16 && !trans_a && m <= kSupMaxRows && lda % 1024 != 0;
}

bool gemm_uses_sup(bool trans_a, int64_t m, int64_t lda) {
  return uses_sup(matmul_precision() == MatmulPrecision::bf16, trans_a, m, lda);
}

namespace {

// Equal k blocks (a multiple of 8 up to the last) rather than KC, KC, ..., small remainder:
// a thin last block would pay a full pass over C for little work. Depends on k alone.
int64_t k_block(const GemmBlocking& bl, int64_t k) {
  const int64_t n_pc = (k + bl.kc - 1) / bl.kc;
  return std::min<int64_t>(bl.kc, ((k + n_pc - 1) / n_pc + 7) / 8 * 8);
}

// The precision is read here, once per call.
GemmPlan gemm_plan(const GemmUkernel& uk, bool trans_a, int64_t m, int64_t n, int64_t k,
                   int64_t lda) {
  GemmPlan p;
  p.mr = uk.mr;
  p.nr = uk.nr;
  p.m = m;
  p.n = n;
  p.bf16 = matmul_precision() == MatmulPrecision::bf16;
  p.native = p.bf16 ? bf16_native_ukernel(uk) : nullptr;
  p.sup = uses_sup(p.bf16, trans_a, m, lda);
  const GemmBlocking& bl = p.sup ? uk.sup : uk.packed;
  p.mc = bl.mc;
  p.nc = bl.nc;
  p.kc = k_block(bl, k);
  p.kc_max = std::min<int64_t>(p.kc, k);
  return p;
}

bool gemm_goes_parallel(int64_t m, int64_t n, int64_t k, int64_t max_threads) {
  return m * n * k >= kParallelMinMacs && max_threads > 1;
}

}  // namespace

static AlignedBuffer& caller_b_buffer() {
  thread_local AlignedBuffer b_buf;
  return b_buf;
}

float* gemm_caller_b_panel(int64_t floats) {
  return caller_b_buffer().get(static_cast<size_t>(floats));
}

int64_t gemm_packed_k_block(int64_t k) { return k_block(gemm_ukernel().packed, k); }

bool gemm_goes_parallel(int64_t m, int64_t n, int64_t k) {
  return gemm_goes_parallel(m, n, k, num_threads());
}

GemmConstants gemm_constants() {
  const GemmUkernel& uk = gemm_ukernel();
  return {uk.mr,         uk.nr,         uk.packed.mc,      uk.packed.kc,    uk.packed.nc,
          uk.sup.mc,     uk.sup.kc,     uk.sup.nc,         kParallelMinMacs, kSupMaxRows,
          kMSplitMinTilesPerThread};
}

GemmWorkspace gemm_workspace(bool trans_a, int64_t m, int64_t n, int64_t k, int64_t lda,
                             int64_t threads) {
  GemmWorkspace w;
  if (m == 0 || n == 0 || k == 0) return w;  // no buffer is touched
  const GemmPlan p = gemm_plan(gemm_ukernel(), trans_a, m, n, k, lda);
  const int64_t nth = gemm_goes_parallel(m, n, k, threads) ? threads : 1;
  const int64_t tm = p.m_split(nth);
  w.threads = nth;
  w.b_shared_bytes =
      tm > 1 ? AlignedBuffer::bytes_for(static_cast<size_t>(p.b_shared_floats())) : 0;
  w.a_bytes = AlignedBuffer::bytes_for(static_cast<size_t>(p.a_floats()));
  w.b_own_bytes =
      tm == 1 ? AlignedBuffer::bytes_for(static_cast<size_t>(p.b_own_floats(nth / tm))) : 0;
  return w;
}

namespace {

// One call's operands and plan, shared by its named steps below.
struct GemmCall {
  const GemmUkernel& uk;
  const GemmPlan& plan;
  bool trans_a, trans_b, relu;
  int64_t m, n, k;
  float alpha, beta;
  const float* a;
  int64_t lda, rsa, csa;  // A's row and column strides as op(A) is read
  const float* b;
  int64_t ldb;
  const GemmPackSource* a_src;  // non-null: A is gathered (packed path only)
  const GemmPackSource* b_src;  // non-null: B is gathered
  float* c;
  int64_t ldc;
  const float* bias;
};

// The rectangle of micro-tiles thread `tid` of a team of `nth` owns for the whole call: rows
// [row0, row1) x columns [col0, col1). M is split for large M (private L2s each hold their
// own A block, the B panel is shared from L3), else N, in whole micropanels. How tiles are
// shared out does not change what any tile computes (the k blocking depends on k alone), so
// the result does not depend on the thread count.
struct ThreadTiles {
  int64_t tm, tn, row0, row1, col0, col1;
};

ThreadTiles tiles_of(const GemmCall& g, int64_t nth, int64_t tid) {
  const int64_t MR = g.uk.mr, m_tiles = (g.m + MR - 1) / MR;
  ThreadTiles t;
  t.tm = g.plan.m_split(nth);
  t.tn = nth / t.tm;
  t.row0 = std::min(g.m, m_tiles * (tid / t.tn) / t.tm * MR);
  t.row1 = std::min(g.m, m_tiles * (tid / t.tn + 1) / t.tm * MR);
  t.col0 = g.plan.col_start(tid % t.tn, t.tn);
  t.col1 = g.plan.col_start(tid % t.tn + 1, t.tn);
  return t;
}

// What a bf16 call does to `panels` micropanels of `width` rows (A) or columns (B) just packed
// in fp32 at src: rounds them in place (the reference path), or converts the one micropanel to
// the native kernel's layout at dst. The only place inputs are rounded.
void finish_panel(const GemmCall& g, bool is_a, float* src, int64_t width, int64_t panels,
                  int64_t kc, float* dst) {
  if (!g.plan.bf16) return;
  if (g.plan.native) (is_a ? g.plan.native->convert_a : g.plan.native->convert_b)(src, kc, dst);
  else bf16_round_inplace(src, panels * width * kc);
}

// Packs B's k block [pc, pc + kc) of columns [jc, jc + nc) into b_panel: this thread's own
// columns, or (an M split, own_b false) the team's shared panel, split over the team. A native
// bf16 kernel's micropanels go one at a time through the thread's stage.
void pack_b_block(const GemmCall& g, float* b_panel, float* stage, bool own_b, int64_t jc,
                  int64_t nc, int64_t pc, int64_t kc) {
  const int64_t NR = g.uk.nr, n_jr = (nc + NR - 1) / NR, kd = g.plan.depth(kc);
  auto pack = [&](int64_t q0, int64_t q1) {  // micropanels [q0, q1) of this column block
    const int64_t step = g.plan.native ? 1 : q1 - q0;
    for (int64_t q = q0; q < q1; q += step) {
      const int64_t cols = std::min(nc, (q + step) * NR) - q * NR;
      float* dst = b_panel + q * NR * kd;
      float* out = g.plan.native ? stage : dst;
      if (g.b_src) g.b_src->pack(g.b_src->ctx, jc + q * NR, cols, pc, kc, NR, out);
      else g.uk.pack_b_panels(g.trans_b, g.b, g.ldb, pc, kc, jc + q * NR, cols, out);
      finish_panel(g, false, out, NR, step, kc, dst);
    }
  };
  if (own_b) {
    pack(0, n_jr);
    return;
  }
  constexpr int64_t kGroup = 8;
#pragma omp for schedule(static)
  for (int64_t q = 0; q < (n_jr + kGroup - 1) / kGroup; ++q) {
    pack(q * kGroup, std::min(n_jr, (q + 1) * kGroup));
  }
}

// C rows [ic, ic + mc) x columns [jc, jc + nc) += the k block [pc, pc + kc): packs A (or its
// partial edge sliver on the small-matrix path, which reads A in place otherwise), then runs
// the microkernel with the B micropanel (L1) outer and the A block (L2) inner.
void multiply_block(const GemmCall& g, float* ap, float* stage, const float* b_panel, int64_t ic,
                    int64_t mc, int64_t jc, int64_t nc, int64_t pc, int64_t kc, bool first,
                    bool last) {
  const int64_t MR = g.uk.mr, NR = g.uk.nr, kd = g.plan.depth(kc);
  const int64_t n_ir = (mc + MR - 1) / MR, n_jr = (nc + NR - 1) / NR;
  const bool sup = g.plan.sup;
  if (!sup) {
    for (int64_t ir = 0; ir < n_ir; ++ir) {
      const int64_t rows = std::min<int64_t>(MR, mc - ir * MR);
      float* dst = ap + ir * MR * kd;
      float* out = g.plan.native ? stage : dst;
      if (g.a_src) g.a_src->pack(g.a_src->ctx, ic + ir * MR, rows, pc, kc, MR, out);
      else g.uk.pack_a(g.trans_a, g.a, g.lda, ic + ir * MR, rows, pc, kc, out);
      finish_panel(g, true, out, MR, 1, kc, dst);
    }
  } else if (mc % MR) {  // the partial edge sliver: in-place reads would overrun
    g.uk.pack_a(g.trans_a, g.a, g.lda, ic + (n_ir - 1) * MR, mc % MR, pc, kc, ap);
  }
  for (int64_t jr = 0; jr < n_jr; ++jr) {
    const int64_t j = jc + jr * NR, nr = std::min<int64_t>(NR, g.n - j);
    const GemmEpilogue ep{g.alpha, first ? g.beta : 1.0f, last && g.bias ? g.bias + j : nullptr,
                          last && g.relu};
    const float* bt = b_panel + jr * NR * kd;
    for (int64_t ir = 0; ir < n_ir; ++ir) {
      const int64_t i = ic + ir * MR, mr = std::min<int64_t>(MR, g.m - i);
      if (g.plan.native) {
        g.plan.native->fn(kc, ap + ir * MR * kd, bt, g.c + i * g.ldc + j, g.ldc, mr, nr, ep);
        continue;
      }
      const bool a_packed = !sup || mr < MR;
      const float* at = !sup ? ap + ir * MR * kd : a_packed ? ap : g.a + i * g.rsa + pc * g.csa;
      g.uk.fn[a_packed](kc, at, g.rsa, g.csa, bt, g.c + i * g.ldc + j, g.ldc, mr, nr, ep);
    }
  }
}

// One team member's whole share of the call. With an M split the packed B panel is shared by
// the team; it belongs to the calling thread (callers may run gemm concurrently with the GIL
// released) and is only allocated then (a single thread never splits M). Otherwise each
// thread packs its own B micropanels, with no barrier at all, and always its own A blocks,
// into its own buffers. All grow once and are reused: no allocation in the steady state.
void gemm_thread(const GemmCall& g, AlignedBuffer& caller_b_buf, float*& b_shared) {
  thread_local AlignedBuffer a_buf, b_own_buf;
  float* const ap = a_buf.get(static_cast<size_t>(g.plan.a_floats()));
  float* const stage = ap + g.plan.a_block_floats();
  const ThreadTiles t = tiles_of(g, omp_get_num_threads(), omp_get_thread_num());
  const bool own_b = t.tm == 1;  // the same on every thread of the team
  if (!own_b) {
#pragma omp master
    b_shared = caller_b_buf.get(static_cast<size_t>(g.plan.b_shared_floats()));
#pragma omp barrier
  }
  float* const b_panel =
      own_b ? b_own_buf.get(static_cast<size_t>(g.plan.b_own_floats(t.tn))) : b_shared;
  // Equal column blocks over this thread's range (the whole N under an M split, the same on
  // every thread then) and equal row blocks over its rows.
  const int64_t NCb = equal_block(t.col1 - t.col0, g.plan.nc, g.uk.nr);
  const int64_t MCb = equal_block(t.row1 - t.row0, g.plan.mc, g.uk.mr);
  for (int64_t jc = t.col0; jc < t.col1; jc += NCb) {
    const int64_t nc = std::min(NCb, t.col1 - jc);
    for (int64_t pc = 0; pc < g.k; pc += g.plan.kc) {
      const int64_t kc = std::min(g.plan.kc, g.k - pc);
      pack_b_block(g, b_panel, stage, own_b, jc, nc, pc, kc);
      for (int64_t ic = t.row0; ic < t.row1; ic += MCb) {
        multiply_block(g, ap, stage, b_panel, ic, std::min(MCb, t.row1 - ic), jc, nc, pc, kc,
                       pc == 0, pc + kc == g.k);
      }
      if (!own_b) {
#pragma omp barrier
      }
    }
  }
}

}  // namespace

void gemm_f32(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
              int64_t ldc, const float* bias, Activation act) {
  gemm_f32_src(trans_a, trans_b, m, n, k, alpha, a, lda, nullptr, b, ldb, nullptr, beta, c, ldc,
               bias, act);
}

void gemm_f32_src(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const GemmPackSource* a_src, const float* b,
                  int64_t ldb, const GemmPackSource* b_src, float beta, float* c, int64_t ldc,
                  const float* bias, Activation act) {
  assert(act == Activation::none || act == Activation::relu);
  if (a_src) trans_a = true;  // a gathered A is packed, as a transposed one is (never sup)
  if (m == 0 || n == 0) return;
  const bool relu = act == Activation::relu;
  if (k == 0) {
    epilogue_only(m, n, beta, c, ldc, bias, relu);
    return;
  }
  const GemmUkernel& uk = gemm_ukernel();
  const GemmPlan plan = gemm_plan(uk, trans_a, m, n, k, lda);
  const GemmCall call{uk, plan, trans_a, trans_b, relu, m,     n,     k,   alpha, beta,
                      a,  lda,  trans_a ? 1 : lda, trans_a ? lda : 1, b, ldb, a_src, b_src,
                      c,  ldc,  bias};
  AlignedBuffer& b_buf = caller_b_buffer();  // the caller's shared B panel (M split only)
  float* b_shared = nullptr;
  const bool parallel = gemm_goes_parallel(m, n, k, num_threads());
#pragma omp parallel if (parallel) num_threads(num_threads())
  gemm_thread(call, b_buf, b_shared);
}

}  // namespace sg
