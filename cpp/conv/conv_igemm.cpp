// The indirect-GEMM driver of the convolution (conv_igemm.h). Per MR-row tile of output (or,
// transposed, input) pixels it builds the row-pointer table once — one run per window tap (or
// per window row, when a row's kw taps are contiguous) and k block — and runs the indirect
// microkernel over every NR column block with it. The gather of pack_image is gone: its copies
// cost about half the microkernel's instructions when c_out is one or two NR blocks.
#include "conv/conv_igemm.h"

#include <algorithm>
#include <vector>

#include "common/aligned_buffer.h"
#include "common/parallel.h"
#include "gemm/gemm_ukernel.h"
#include "gemm/matmul_precision.h"

namespace sg::conv_gather {
namespace {

// One tile's runs: rows[s * mr + r] and len[s] for run s, the runs of k block q starting at
// first[q]. Sized before the tile loop (runs_bound) and filled by index: the loop does no
// allocation and no capacity test.
struct TileRuns {
  std::vector<const float*> rows;
  std::vector<int64_t> len, first;
};

// The most runs one tile's k blocks can have: every unit (of the smaller, per-tap size) plus
// one split by each k-block boundary.
int64_t runs_bound(const ImageGather& s, int64_t k, int64_t kc) {
  return (k + s.nch - 1) / s.nch + (k + kc - 1) / kc;
}

// Runs of k block [pc, pc + kc): the units (window taps of nch channels, or window rows of kw *
// nch) that overlap it, each clipped to the block.
void tile_runs(const ImageGather& s, const TileRows& tr, int64_t mr, int64_t k, int64_t kc,
               const float* zero, TileRuns& out) {
  const ConvGeometry& g = *s.g;
  const bool dense = dense_window_rows(s, tr);
  const int64_t unit = dense ? g.kw * s.nch : s.nch;
  const float** rows = out.rows.data();
  int64_t* len = out.len.data();
  int64_t* first = out.first.data();
  int64_t ns = 0;
  for (int64_t pc = 0, q = 0; pc < k; pc += kc, ++q) {
    const int64_t pe = std::min(k, pc + kc);
    first[q] = ns;
    for (int64_t u = pc / unit; u * unit < pe; ++u, ++ns) {
      const int64_t c0 = std::max(pc, u * unit) - u * unit;
      const int64_t c1 = std::min(pe, (u + 1) * unit) - u * unit;
      len[ns] = c1 - c0;
      int64_t ky = u, kx = 0;
      if (!dense) tap_of(s, u, ky, kx);
      const float** rs = rows + ns * mr;
      if (tr.inner) {
        const float* origin = s.src + (dense ? dense_row_offset(s, ky) : tap_offset(s, ky, kx)) + c0;
        for (int64_t r = 0; r < mr; ++r) rs[r] = origin + tr.base[r];
      } else {
        for (int64_t r = 0; r < mr; ++r) {
          const float* p = tap_source(s, tr.px[r], ky, kx);
          rs[r] = p ? p + c0 : zero;
        }
      }
    }
  }
  first[(k + kc - 1) / kc] = ns;
}

}  // namespace

bool conv_igemm_pays(const ImageGather& a) {
  // bf16 precision rounds A while packing it, and the indirect kernel never packs A.
  if (matmul_precision() == MatmulPrecision::bf16) return false;
  const bool dense = a.g->dw == 1 && a.ld == a.nch;
  return (dense ? a.g->kw * a.nch : a.nch) >= kIgemmMinRun;
}

GemmWorkspace conv_igemm_workspace(int64_t m, int64_t n, int64_t k, int64_t threads) {
  const int64_t NR = gemm_ukernel().nr;
  GemmWorkspace w;
  w.threads = m > 0 && n > 0 && k > 0 && gemm_goes_parallel(m, n, k) ? threads : 1;
  w.b_shared_bytes = static_cast<int64_t>(
      AlignedBuffer::bytes_for(static_cast<size_t>((n + NR - 1) / NR * NR * k)));
  return w;
}

void conv_igemm(const ImageGather& a, const GemmPackSource& b, int64_t m, int64_t n, int64_t k,
                float* c, int64_t ldc, const float* bias, Activation act) {
  if (m == 0 || n == 0 || k == 0) return;  // callers have k > 0 (a window has a tap)
  const GemmUkernel& uk = gemm_ukernel();
  const int64_t MR = uk.mr, NR = uk.nr;
  const int64_t kc = gemm_packed_k_block(k);
  const int64_t nb = (n + NR - 1) / NR, npad = nb * NR;
  // B whole, k block after k block, each ceil(n / NR) micropanels (the caller's thread: every
  // thread of the team reads it).
  float* const bp = gemm_caller_b_panel(npad * k);
  for (int64_t pc = 0; pc < k; pc += kc) b.pack(b.ctx, 0, n, pc, std::min(kc, k - pc), NR, bp + pc * npad);
  const bool relu = act == Activation::relu;
  const int64_t tiles = (m + MR - 1) / MR;
  const bool parallel = gemm_goes_parallel(m, n, k);
  // Each thread's run table and the zero run that padding taps and dead rows point at, set up
  // once per call.
  const int64_t unit = std::max(a.g->kw * a.nch, a.nch);
  const int64_t max_runs = runs_bound(a, k, kc), kblocks = (k + kc - 1) / kc;
#pragma omp parallel if (parallel) num_threads(num_threads())
  {
    // Thread-local so that they are grown once and reused across calls; looked up here, once
    // per thread (inside the tile loop each access was a __tls_get_addr call: 3% of a C2 step).
    thread_local TileRuns tl_runs;
    thread_local std::vector<float> tl_zero;
    TileRuns& runs = tl_runs;
    const auto grow = [](auto& v, int64_t size) {
      if (v.size() < static_cast<size_t>(size)) v.resize(static_cast<size_t>(size));
    };
    grow(runs.rows, max_runs * MR), grow(runs.len, max_runs), grow(runs.first, kblocks + 1);
    std::vector<float>& zero = tl_zero;
    if (zero.size() < static_cast<size_t>(unit)) zero.assign(static_cast<size_t>(unit), 0.0f);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t i0 = t * MR, mr = std::min(MR, m - i0);
      TileRows tr;
      decode_rows(a, i0, mr, MR, tr);
      tile_runs(a, tr, MR, k, kc, zero.data(), runs);
      for (int64_t jb = 0; jb < nb; ++jb) {
        const int64_t j = jb * NR, nr = std::min(NR, n - j);
        for (int64_t q = 0, pc = 0; pc < k; ++q, pc += kc) {
          const int64_t kcq = std::min(kc, k - pc);
          const bool last = pc + kcq == k;
          const GemmEpilogue ep{1.0f, pc == 0 ? 0.0f : 1.0f, last && bias ? bias + j : nullptr,
                                last && relu};
          const int64_t s0 = runs.first[q], ns = runs.first[q + 1] - s0;
          uk.igemm(ns, runs.rows.data() + s0 * MR, runs.len.data() + s0,
                   bp + pc * npad + jb * NR * kcq, c + i0 * ldc + j, ldc, mr, nr, ep);
        }
      }
    }
  }
}

}  // namespace sg::conv_gather
