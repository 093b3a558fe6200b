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

namespace sg::conv_gather {
namespace {

// One tile's runs: rows[s * mr + r] and len[s] for run s, the runs of k block q starting at
// first[q]. Thread-local tables, grown once and reused.
struct TileRuns {
  std::vector<const float*> rows;
  std::vector<int64_t> len, first;
};

// Runs of k block [pc, pc + kc): the units (window taps of nch channels, or window rows of kw *
// nch) that overlap it, each clipped to the block.
void tile_runs(const ImageGather& s, const TileRows& tr, int64_t mr, int64_t k, int64_t kc,
               const float* zero, TileRuns& out) {
  const ConvGeometry& g = *s.g;
  const bool dense = dense_window_rows(s, tr);
  const int64_t unit = dense ? g.kw * s.nch : s.nch;
  out.rows.clear(), out.len.clear(), out.first.clear();
  for (int64_t pc = 0; pc < k; pc += kc) {
    const int64_t pe = std::min(k, pc + kc);
    out.first.push_back(static_cast<int64_t>(out.len.size()));
    for (int64_t u = pc / unit; u * unit < pe; ++u) {
      const int64_t c0 = std::max(pc, u * unit) - u * unit;
      const int64_t c1 = std::min(pe, (u + 1) * unit) - u * unit;
      out.len.push_back(c1 - c0);
      const int64_t ky = dense ? u : u / g.kw, kx = dense ? 0 : u % g.kw;
      const int64_t delta = dense ? ky * window_row_stride(s) : tap_offset(s, ky, kx);
      for (int64_t r = 0; r < mr; ++r) {
        const float* p = tr.inner ? s.src + (tr.base[r] + delta) : tap_source(s, tr.px[r], ky, kx);
        out.rows.push_back(p ? p + c0 : zero);
      }
    }
  }
  out.first.push_back(static_cast<int64_t>(out.len.size()));
}

}  // namespace

bool conv_igemm_pays(const ImageGather& a) {
  const bool dense = !a.transposed && a.g->dw == 1 && a.ld == a.nch;
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
#pragma omp parallel for schedule(static) if (parallel) num_threads(num_threads())
  for (int64_t t = 0; t < tiles; ++t) {
    thread_local TileRuns runs;
    // The zero run padding taps and dead rows point at: zeroed when it grows, not per tile.
    thread_local AlignedBuffer zero_buf;
    thread_local int64_t zeroed = 0;
    const int64_t unit = std::max(a.g->kw * a.nch, a.nch);
    float* zero = zero_buf.get(static_cast<size_t>(unit));
    if (unit > zeroed) std::fill(zero, zero + unit, 0.0f), zeroed = unit;
    const int64_t i0 = t * MR, mr = std::min(MR, m - i0);
    TileRows tr;
    decode_rows(a, i0, mr, MR, tr);
    tile_runs(a, tr, MR, k, kc, zero, runs);
    for (int64_t jb = 0; jb < nb; ++jb) {
      const int64_t j = jb * NR, nr = std::min(NR, n - j);
      for (int64_t q = 0, pc = 0; pc < k; ++q, pc += kc) {
        const int64_t kcq = std::min(kc, k - pc);
        const bool last = pc + kcq == k;
        const GemmEpilogue ep{1.0f, pc == 0 ? 0.0f : 1.0f, last && bias ? bias + j : nullptr,
                              last && relu};
        const int64_t s0 = runs.first[q], ns = runs.first[q + 1] - s0;
        uk.igemm(ns, runs.rows.data() + s0 * MR, runs.len.data() + s0, bp + pc * npad + jb * NR * kcq,
                 c + i0 * ldc + j, ldc, mr, nr, ep);
      }
    }
  }
}

}  // namespace sg::conv_gather
