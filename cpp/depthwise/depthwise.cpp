// The depthwise driver (see depthwise.h): weight repacking, widening for m > 1, the thread
// split and the fixed-order dW/db reduction. The arithmetic is in the row kernels.
//
// Parallel split: the forward over output rows (image, oy), dX over input rows (image, iy);
// each row is written by one thread with a fixed sequence of operations, so any split gives
// the same bits. dW/db: the n * oh output rows are cut into chunks of about kChunkPixels
// output pixels (from the geometry only); each chunk sums its rows into a float partial from
// zero, and the partials are added in double in chunk order, whatever thread computed them.
#include "depthwise/depthwise.h"

#include <omp.h>

#include <algorithm>
#include <cstddef>

#include "common/driver_workspace.h"
#include "common/parallel.h"

namespace sg {
namespace {

constexpr int64_t kParallelMacs = int64_t{1} << 16;  // below this a team costs more than it saves
constexpr int64_t kChunkPixels = 1024;               // output pixels per dW/db chunk (about)

int64_t macs(const ConvGeometry& g) { return g.out_pixels() * g.c_out * g.kh * g.kw; }

// wk[(r * kw + s) * c_out + o] = weight[(o * kh + r) * kw + s]: channel-contiguous taps.
void repack_weight(float* wk, const float* weight, const ConvGeometry& g) {
  const int64_t taps = g.kh * g.kw;
  for (int64_t o = 0; o < g.c_out; ++o)
    for (int64_t t = 0; t < taps; ++t) wk[t * g.c_out + o] = weight[o * taps + t];
}

// Row iy of image img as a wide row (w, c_out): x's own row when c_out == c_in, else each
// input channel repeated m times into buf (channel ci * m + j = input channel ci).
const float* wide_row(float* buf, const float* x, const ConvGeometry& g, int64_t img, int64_t iy) {
  const float* src = x + (img * g.h + iy) * g.w * g.c_in;
  if (g.c_out == g.c_in) return src;
  const int64_t m = g.c_out / g.c_in;
  for (int64_t ix = 0; ix < g.w; ++ix) {
    const float* p = src + ix * g.c_in;
    float* q = buf + ix * g.c_out;
    for (int64_t ci = 0; ci < g.c_in; ++ci)
      for (int64_t j = 0; j < m; ++j) q[ci * m + j] = p[ci];
  }
  return buf;
}

// The wide input rows of output row oy's taps into rows[0, kh) (null: a padding row);
// widened copies go to buf (kh wide rows) when m > 1.
void input_rows(const float** rows, float* buf, const float* x, const ConvGeometry& g,
                int64_t img, int64_t oy) {
  for (int64_t r = 0; r < g.kh; ++r) {
    const int64_t iy = oy * g.sh - g.ph0 + r * g.dh;
    rows[r] = iy >= 0 && iy < g.h ? wide_row(buf + r * g.w * g.c_out, x, g, img, iy) : nullptr;
  }
}

// Per-thread scratch for `team` threads, each `floats` floats (64-byte aligned slots), and
// `ptrs` row pointers each, carved from the driver workspace by the caller before any parallel
// region (a throw inside one would terminate).
struct TeamScratch {
  int64_t slot = 0;
  float* base = nullptr;
  const float** ptrs = nullptr;
  int64_t nptr = 0;
  float* floats(int tid) const { return base + tid * slot; }
  const float** rows(int tid) const { return ptrs + tid * nptr; }
};

TeamScratch team_scratch(Carver& c, int team, int64_t floats, int64_t nptr) {
  TeamScratch s;
  s.slot = (floats + 15) / 16 * 16;
  s.base = c.take<float>(std::max<int64_t>(1, s.slot * team));
  s.ptrs = c.take<const float*>(team * nptr);
  s.nptr = nptr;
  return s;
}

// The pieces of one forward (wide: kh widened rows per thread) or dX pass (one wide row per
// thread): the packed weight and the team's scratch.
struct RowPass {
  float* wk;
  TeamScratch s;
};

RowPass row_pass(Carver& c, const ConvGeometry& g, int team, int64_t rows_per_thread) {
  float* wk = c.take<float>(g.kh * g.kw * g.c_out);
  const bool wide = g.c_out != g.c_in;
  return RowPass{wk, team_scratch(c, team, wide ? rows_per_thread * g.w * g.c_out : 0, g.kh)};
}

// The pieces of the dW/db reduction: the double totals, `block` chunks' float partials and
// the team's widened rows.
struct GradPass {
  double* total;
  float* part;
  int64_t part_len;
  TeamScratch s;
};

int64_t grad_chunks(const ConvGeometry& g, int64_t* rows_per_chunk) {
  *rows_per_chunk = std::max<int64_t>(1, kChunkPixels / g.ow);
  return (g.n * g.oh + *rows_per_chunk - 1) / *rows_per_chunk;
}

GradPass grad_pass(Carver& c, const ConvGeometry& g, int64_t nw, int64_t nb, int team, bool par) {
  int64_t rows_per_chunk;
  const int64_t nchunks = grad_chunks(g, &rows_per_chunk);
  // chunks per parallel block: their float partials are held until combined in order
  const int64_t block = std::max<int64_t>(1, std::min<int64_t>(nchunks, par ? 4 * team : 1));
  GradPass p;
  p.total = c.take<double>(nw + nb);
  p.part_len = (nw + nb + 15) / 16 * 16;
  p.part = c.take<float>(block * p.part_len);
  p.s = team_scratch(c, team, g.c_out != g.c_in ? g.kh * g.w * g.c_out : 0, g.kh);
  return p;
}

int team_size(bool par, int64_t threads) { return par ? static_cast<int>(threads) : 1; }

// dweight / dbias (either may be null) from the fixed chunks (see the top of this file).
void weight_grads(float* dweight, float* dbias, const float* dy, const float* x,
                  const ConvGeometry& g, bool acc_weight, bool acc_bias, const DepthwiseKernels& k,
                  int team, bool par) {
  const int64_t co = g.c_out, taps = g.kh * g.kw;
  const int64_t nw = dweight ? taps * co : 0, nb = dbias ? co : 0;
  const int64_t rows = g.n * g.oh;
  int64_t rows_per_chunk;
  const int64_t nchunks = grad_chunks(g, &rows_per_chunk);
  const GradPass p = carve_workspace([&](Carver& c) { return grad_pass(c, g, nw, nb, team, par); });
  // sums in double, in tap-major order (t, o) like the partials
  double* total = p.total;
  std::fill(total, total + nw + nb, 0.0);
  if (nchunks > 0) {
    const int64_t block = std::min<int64_t>(nchunks, par ? 4 * team : 1);
    for (int64_t c0 = 0; c0 < nchunks; c0 += block) {
      const int64_t cnt = std::min(block, nchunks - c0);
#pragma omp parallel for schedule(static) if (par && cnt > 1) num_threads(team)
      for (int64_t c = 0; c < cnt; ++c) {
        const int tid = omp_get_thread_num();
        float* pw = p.part + c * p.part_len;
        std::fill(pw, pw + nw + nb, 0.0f);
        const float** xr = p.s.rows(tid);
        const int64_t q0 = (c0 + c) * rows_per_chunk, q1 = std::min(rows, q0 + rows_per_chunk);
        for (int64_t q = q0; q < q1; ++q) {
          if (nw) input_rows(xr, p.s.floats(tid), x, g, q / g.oh, q % g.oh);
          k.weight_grad_row(nw ? pw : nullptr, nb ? pw + nw : nullptr, dy + q * g.ow * co, xr, g);
        }
      }
      for (int64_t c = 0; c < cnt; ++c) {
        const float* pw = p.part + c * p.part_len;
        for (int64_t i = 0; i < nw + nb; ++i) total[i] += static_cast<double>(pw[i]);
      }
    }
  }
  for (int64_t o = 0; o < co && dweight; ++o) {
    for (int64_t t = 0; t < taps; ++t) {
      const double v = total[t * co + o];
      float& d = dweight[o * taps + t];
      d = static_cast<float>(acc_weight ? d + v : v);
    }
  }
  for (int64_t o = 0; o < co && dbias; ++o) {
    const double v = total[nw + o];
    dbias[o] = static_cast<float>(acc_bias ? dbias[o] + v : v);
  }
}

bool forward_parallel(const ConvGeometry& g, int64_t threads) {
  return macs(g) >= kParallelMacs && g.n * g.oh > 1 && threads > 1;
}
bool backward_parallel(const ConvGeometry& g, int64_t threads) {
  return macs(g) >= kParallelMacs && threads > 1;
}

}  // namespace

void depthwise_forward_f32(float* y, const float* x, const float* weight, const float* bias,
                           const ConvGeometry& g, bool relu) {
  const int64_t rows = g.n * g.oh;
  if (rows == 0) return;
  const DepthwiseKernels& k = depthwise_kernels();
  const bool par = forward_parallel(g, num_threads());
  const int team = team_size(par, num_threads());
  const RowPass rp = carve_workspace([&](Carver& c) { return row_pass(c, g, team, g.kh); });
  repack_weight(rp.wk, weight, g);
  const float* wk = rp.wk;
  const TeamScratch& s = rp.s;
#pragma omp parallel for schedule(static) if (par) num_threads(team)
  for (int64_t q = 0; q < rows; ++q) {
    const int tid = omp_get_thread_num();
    const float** xr = s.rows(tid);
    input_rows(xr, s.floats(tid), x, g, q / g.oh, q % g.oh);
    k.forward_row(y + q * g.ow * g.c_out, xr, wk, bias, g, relu);
  }
}

void depthwise_backward_f32(float* dx, float* dweight, float* dbias, const float* dy,
                            const float* x, const float* weight, const ConvGeometry& g,
                            bool acc_weight, bool acc_bias) {
  const DepthwiseKernels& k = depthwise_kernels();
  const bool par = backward_parallel(g, num_threads());
  const int team = team_size(par, num_threads());
  if (dweight || dbias) weight_grads(dweight, dbias, dy, x, g, acc_weight, acc_bias, k, team, par);
  if (!dx) return;
  const int64_t rows = g.n * g.h;
  if (rows == 0) return;
  const RowPass rp = carve_workspace([&](Carver& c) { return row_pass(c, g, team, 1); });
  repack_weight(rp.wk, weight, g);
  const float* wk = rp.wk;
  const TeamScratch& s = rp.s;
  const bool wide = g.c_out != g.c_in;
  const int64_t m = g.c_out / g.c_in;
#pragma omp parallel for schedule(static) if (par && rows > 1) num_threads(team)
  for (int64_t q = 0; q < rows; ++q) {
    const int tid = omp_get_thread_num();
    const int64_t img = q / g.h, iy = q % g.h;
    const float** dr = s.rows(tid);
    for (int64_t r = 0; r < g.kh; ++r) {  // the output row oy with oy * sh = iy + ph0 - r * dh
      const int64_t num = iy + g.ph0 - r * g.dh;
      const bool hit = num >= 0 && num % g.sh == 0 && num / g.sh < g.oh;
      dr[r] = hit ? dy + (img * g.oh + num / g.sh) * g.ow * g.c_out : nullptr;
    }
    float* out = dx + q * g.w * g.c_in;
    if (!wide) {
      k.input_grad_row(out, dr, wk, g);
      continue;
    }
    // dx[ci] = sum over j of the wide row's channel ci * m + j, in j order
    float* t = s.floats(tid);
    k.input_grad_row(t, dr, wk, g);
    for (int64_t ix = 0; ix < g.w; ++ix) {
      const float* p = t + ix * g.c_out;
      for (int64_t ci = 0; ci < g.c_in; ++ci) {
        float sum = p[ci * m];
        for (int64_t j = 1; j < m; ++j) sum += p[ci * m + j];
        out[ix * g.c_in + ci] = sum;
      }
    }
  }
}

int64_t depthwise_scratch_bytes(const ConvGeometry& g, bool input_grad, int64_t threads) {
  const int64_t fwd_team = team_size(forward_parallel(g, threads), threads);
  const int64_t bwd_team = team_size(backward_parallel(g, threads), threads);
  const int64_t taps = g.kh * g.kw;
  int64_t bytes = workspace_bytes(
      [&](Carver& c) { return row_pass(c, g, static_cast<int>(fwd_team), g.kh); });
  bytes = std::max(bytes, workspace_bytes([&](Carver& c) {  // dW and db both computed: the most
    return grad_pass(c, g, taps * g.c_out, g.c_out, static_cast<int>(bwd_team),
                     backward_parallel(g, threads));
  }));
  if (input_grad) {
    bytes = std::max(bytes, workspace_bytes([&](Carver& c) {
      return row_pass(c, g, static_cast<int>(bwd_team), 1);
    }));
  }
  return bytes;
}

}  // namespace sg
