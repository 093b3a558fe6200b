// Pooling drivers: the per-axis window tables (PoolAxis) of max, average and adaptive average
// pooling built from the geometry, then the active ISA's kernel over rows, in parallel when the
// call is large enough. Each row is computed by one kernel call whatever the thread count.
#include "pooling/pooling.h"

#include <algorithm>

#include "common/driver_workspace.h"
#include "common/parallel.h"

namespace sg {
namespace {

// One axis's tables (PoolAxis) carved from c: window o's start, its elements inside the input
// [klo, khi) and divisor factor div (1 without `divs`) from window(o, &start, &klo, &khi, &div),
// then the cover lists (the inputs' view of the windows) from them. Measuring (c carves no
// memory), only the sizes are computed: the cover lists' length is the windows' total extent.
template <class Window>
PoolAxis carve_axis(Carver& c, int64_t in, int64_t out, int64_t step, Window&& window) {
  PoolAxis a;
  a.in = in;
  a.out = out;
  a.step = step;
  int64_t* start = c.take<int64_t>(out);
  int64_t* klo = c.take<int64_t>(out);
  int64_t* khi = c.take<int64_t>(out);
  float* div = c.take<float>(out);
  int64_t* off = c.take<int64_t>(in + 1);
  int64_t* next = c.take<int64_t>(in);
  int64_t total = 0;
  for (int64_t o = 0; o < out; ++o) {
    int64_t s0, lo, hi;
    float d;
    window(o, &s0, &lo, &hi, &d);
    total += hi - lo;
    if (start) start[o] = s0, klo[o] = lo, khi[o] = hi, div[o] = d;
  }
  int64_t* cover_o = c.take<int64_t>(total);
  int64_t* cover_k = c.take<int64_t>(total);
  if (!start) return a;
  std::fill(off, off + in + 1, int64_t{0});
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t k = klo[o]; k < khi[o]; ++k) ++off[start[o] + k * step + 1];
  }
  for (int64_t i = 0; i < in; ++i) off[i + 1] += off[i];
  std::copy(off, off + in, next);
  for (int64_t o = 0; o < out; ++o) {  // ascending o: each input's list comes out sorted
    for (int64_t k = klo[o]; k < khi[o]; ++k) {
      const int64_t j = next[start[o] + k * step]++;
      cover_o[j] = o;
      cover_k[j] = k;
    }
  }
  a.start = start, a.klo = klo, a.khi = khi, a.div = div;
  a.cover_off = off, a.cover_o = cover_o, a.cover_k = cover_k;
  return a;
}

// A strided window axis: output o's element k at o * stride - pad0 + k * dil, k < kernel.
// avg: torch's divisor factor of an average, the window clipped at the padded edge (pad1
// after the input; count_include_pad) or at the input (not); else 1.
PoolAxis window_axis(Carver& c, int64_t in, int64_t out, int64_t kernel, int64_t stride,
                     int64_t dil, int64_t pad0, int64_t pad1, bool avg, bool count_include_pad) {
  return carve_axis(c, in, out, dil, [&](int64_t o, int64_t* s0, int64_t* klo, int64_t* khi,
                                         float* div) {
    const int64_t s = o * stride - pad0;
    const int64_t lo = s >= 0 ? 0 : (-s + dil - 1) / dil;           // first k with s + k*dil >= 0
    const int64_t hi = s >= in ? 0 : std::min(kernel, (in - s + dil - 1) / dil);  // s + k*dil < in
    *s0 = s;
    *klo = std::min(lo, kernel);
    *khi = std::max(hi, *klo);
    const int64_t n = count_include_pad ? std::min(s + kernel, in + pad1) - s : *khi - *klo;
    *div = avg ? static_cast<float>(n) : 1.0f;
  });
}

// torch's adaptive windows: [floor(o * in / out), ceil((o + 1) * in / out)).
PoolAxis adaptive_axis(Carver& c, int64_t in, int64_t out) {
  return carve_axis(c, in, out, 1, [&](int64_t o, int64_t* s0, int64_t* klo, int64_t* khi,
                                       float* div) {
    const int64_t s = o * in / out, e = ((o + 1) * in + out - 1) / out;
    *s0 = s;
    *klo = 0;
    *khi = e - s;
    *div = static_cast<float>(e - s);
  });
}

struct PoolTables {
  PoolAxis rows, cols;
};

// The two axes of a max (avg false) or average pooling; a divisor override (non-zero)
// replaces the average's divisor product (rows' factor the override, columns' 1).
PoolTables window_tables(Carver& c, const ConvGeometry& g, bool avg, bool count_include_pad,
                         int64_t divisor_override) {
  const bool own_div = avg && divisor_override == 0;
  PoolTables t{window_axis(c, g.h, g.oh, g.kh, g.sh, g.dh, g.ph0, g.ph1, own_div, count_include_pad),
               window_axis(c, g.w, g.ow, g.kw, g.sw, g.dw, g.pw0, g.pw1, own_div, count_include_pad)};
  if (avg && divisor_override != 0 && t.rows.div) {
    std::fill(const_cast<float*>(t.rows.div), const_cast<float*>(t.rows.div) + g.oh,
              static_cast<float>(divisor_override));
  }
  return t;
}

PoolTables adaptive_tables(Carver& c, int64_t h, int64_t w, int64_t oh, int64_t ow) {
  return PoolTables{adaptive_axis(c, h, oh), adaptive_axis(c, w, ow)};
}

// body(r0, r1) over [0, rows), one row per iteration in parallel when rows * work is large.
template <class Body>
void over_rows(int64_t rows, int64_t work_per_row, Body body) {
  if (rows < 2 || num_threads() < 2 || rows * work_per_row < kElementwiseParallelMin) {
    body(int64_t{0}, rows);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(num_threads())
  for (int64_t r = 0; r < rows; ++r) body(r, r + 1);
}

int64_t cover_work(const PoolAxis& a) {  // window elements per input position, rounded up
  return a.in ? (a.cover_off[a.in] + a.in - 1) / a.in + 1 : 1;
}

}  // namespace

void max_pool_forward(const ConvGeometry& g, const float* x, float* y, int32_t* argmax) {
  const PoolTables t = carve_workspace(
      [&](Carver& c) { return window_tables(c, g, false, false, 0); });
  const PoolingKernels& k = pooling_kernels();
  over_rows(g.n * g.oh, g.ow * g.c_in * g.kh * g.kw, [&](int64_t r0, int64_t r1) {
    k.max_forward(y, argmax, x, g.h, g.w, g.c_in, t.rows, t.cols, g.kw, r0, r1);
  });
}

void max_pool_backward(const ConvGeometry& g, const float* dy, const int32_t* argmax, float* dx) {
  const PoolTables t = carve_workspace(
      [&](Carver& c) { return window_tables(c, g, false, false, 0); });
  const PoolingKernels& k = pooling_kernels();
  over_rows(g.n * g.h, g.w * g.c_in * cover_work(t.rows) * cover_work(t.cols),
            [&](int64_t r0, int64_t r1) {
              k.max_backward(dx, dy, argmax, g.h, g.w, g.c_in, t.rows, t.cols, g.kw, r0, r1);
            });
}

void avg_pool_forward(const ConvGeometry& g, bool count_include_pad, int64_t divisor_override,
                      const float* x, float* y) {
  const PoolTables t = carve_workspace([&](Carver& c) {
    return window_tables(c, g, true, count_include_pad, divisor_override);
  });
  const PoolingKernels& k = pooling_kernels();
  over_rows(g.n * g.oh, g.ow * g.c_in * g.kh * g.kw, [&](int64_t r0, int64_t r1) {
    k.avg_forward(y, x, g.h, g.w, g.c_in, t.rows, t.cols, false, r0, r1);
  });
}

void avg_pool_backward(const ConvGeometry& g, bool count_include_pad, int64_t divisor_override,
                       const float* dy, float* dx) {
  const PoolTables t = carve_workspace([&](Carver& c) {
    return window_tables(c, g, true, count_include_pad, divisor_override);
  });
  const PoolingKernels& k = pooling_kernels();
  over_rows(g.n * g.h, g.w * g.c_in * cover_work(t.rows) * cover_work(t.cols),
            [&](int64_t r0, int64_t r1) {
              k.avg_backward(dx, dy, g.h, g.w, g.c_in, t.rows, t.cols, false, r0, r1);
            });
}

void adaptive_avg_pool_forward(int64_t n, int64_t h, int64_t w, int64_t c, int64_t oh,
                               int64_t ow, const float* x, float* y) {
  const PoolTables t = carve_workspace([&](Carver& cv) { return adaptive_tables(cv, h, w, oh, ow); });
  const PoolingKernels& k = pooling_kernels();
  const int64_t win = ((h + oh - 1) / oh + 1) * ((w + ow - 1) / ow + 1);
  over_rows(n * oh, ow * c * win, [&](int64_t r0, int64_t r1) {
    k.avg_forward(y, x, h, w, c, t.rows, t.cols, true, r0, r1);
  });
}

void adaptive_avg_pool_backward(int64_t n, int64_t h, int64_t w, int64_t c, int64_t oh,
                                int64_t ow, const float* dy, float* dx) {
  const PoolTables t = carve_workspace([&](Carver& cv) { return adaptive_tables(cv, h, w, oh, ow); });
  const PoolingKernels& k = pooling_kernels();
  over_rows(n * h, w * c * cover_work(t.rows) * cover_work(t.cols), [&](int64_t r0, int64_t r1) {
    k.avg_backward(dx, dy, h, w, c, t.rows, t.cols, true, r0, r1);
  });
}

int64_t pool_scratch_bytes(const ConvGeometry& g) {
  // max and average pooling carve the same tables (the divisor factors are always there)
  return workspace_bytes([&](Carver& c) { return window_tables(c, g, true, true, 0); });
}

int64_t adaptive_pool_scratch_bytes(int64_t h, int64_t w, int64_t oh, int64_t ow) {
  return workspace_bytes([&](Carver& c) { return adaptive_tables(c, h, w, oh, ow); });
}

}  // namespace sg
