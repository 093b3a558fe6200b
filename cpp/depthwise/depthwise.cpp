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
#include <vector>

#include "common/aligned_buffer.h"
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
// `ptrs` row pointers each; allocated by the caller before any parallel region (a throw
// inside one would terminate).
struct TeamScratch {
  int64_t slot = 0;
  float* base = nullptr;
  std::vector<const float*> ptrs;
  int64_t nptr = 0;
  float* floats(int tid) const { return base + tid * slot; }
  const float** rows(int tid) { return ptrs.data() + tid * nptr; }
};

TeamScratch team_scratch(AlignedBuffer& buf, int team, int64_t floats, int64_t nptr) {
  TeamScratch s;
  s.slot = (floats + 15) / 16 * 16;
  s.base = buf.get(static_cast<size_t>(std::max<int64_t>(1, s.slot * team)));
  s.ptrs.assign(static_cast<size_t>(team * nptr), nullptr);
  s.nptr = nptr;
  return s;
}

float* packed_weight(const float* weight, const ConvGeometry& g) {
  thread_local AlignedBuffer wk_buf;
  float* wk = wk_buf.get(static_cast<size_t>(g.kh * g.kw * g.c_out));
  repack_weight(wk, weight, g);
  return wk;
}

// dweight / dbias (either may be null) from the fixed chunks (see the top of this file).
void weight_grads(float* dweight, float* dbias, const float* dy, const float* x,
                  const ConvGeometry& g, bool acc_weight, bool acc_bias, const DepthwiseKernels& k,
                  int team, bool par) {
  const int64_t co = g.c_out, taps = g.kh * g.kw;
  const int64_t nw = dweight ? taps * co : 0, nb = dbias ? co : 0;
  const int64_t rows = g.n * g.oh;
  const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkPixels / g.ow);
  const int64_t nchunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  // sums in double, in tap-major order (t, o) like the partials
  std::vector<double> total(static_cast<size_t>(nw + nb), 0.0);
  if (nchunks > 0) {
    const bool wide = co != g.c_in;
    // chunks per parallel block: their float partials are held until combined in order
    const int64_t block = std::min<int64_t>(nchunks, par ? 4 * team : 1);
    const int64_t part_len = (nw + nb + 15) / 16 * 16;
    thread_local AlignedBuffer part_buf, buf;
    float* part = part_buf.get(static_cast<size_t>(block * part_len));
    TeamScratch s = team_scratch(buf, team, wide ? g.kh * g.w * co : 0, g.kh);
    for (int64_t c0 = 0; c0 < nchunks; c0 += block) {
      const int64_t cnt = std::min(block, nchunks - c0);
#pragma omp parallel for schedule(static) if (par && cnt > 1) num_threads(team)
      for (int64_t c = 0; c < cnt; ++c) {
        const int tid = omp_get_thread_num();
        float* pw = part + c * part_len;
        std::fill(pw, pw + nw + nb, 0.0f);
        const float** xr = s.rows(tid);
        const int64_t q0 = (c0 + c) * rows_per_chunk, q1 = std::min(rows, q0 + rows_per_chunk);
        for (int64_t q = q0; q < q1; ++q) {
          if (nw) input_rows(xr, s.floats(tid), x, g, q / g.oh, q % g.oh);
          k.weight_grad_row(nw ? pw : nullptr, nb ? pw + nw : nullptr, dy + q * g.ow * co, xr, g);
        }
      }
      for (int64_t c = 0; c < cnt; ++c) {
        const float* pw = part + c * part_len;
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

}  // namespace

void depthwise_forward_f32(float* y, const float* x, const float* weight, const float* bias,
                           const ConvGeometry& g, bool relu) {
  const int64_t rows = g.n * g.oh;
  if (rows == 0) return;
  const DepthwiseKernels& k = depthwise_kernels();
  const float* wk = packed_weight(weight, g);
  const bool par = macs(g) >= kParallelMacs && rows > 1 && num_threads() > 1;
  const int team = par ? num_threads() : 1;
  const bool wide = g.c_out != g.c_in;
  thread_local AlignedBuffer buf;
  TeamScratch s = team_scratch(buf, team, wide ? g.kh * g.w * g.c_out : 0, g.kh);
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
  const bool par = macs(g) >= kParallelMacs && num_threads() > 1;
  const int team = par ? num_threads() : 1;
  if (dweight || dbias) weight_grads(dweight, dbias, dy, x, g, acc_weight, acc_bias, k, team, par);
  if (!dx) return;
  const int64_t rows = g.n * g.h;
  if (rows == 0) return;
  const float* wk = packed_weight(weight, g);
  const bool wide = g.c_out != g.c_in;
  const int64_t m = g.c_out / g.c_in;
  thread_local AlignedBuffer buf;
  TeamScratch s = team_scratch(buf, team, wide ? g.w * g.c_out : 0, g.kh);
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

}  // namespace sg
