// Pooling drivers: the per-axis window tables (PoolAxis) of max, average and adaptive average
// pooling built from the geometry, then the active ISA's kernel over rows, in parallel when the
// call is large enough. Each row is computed by one kernel call whatever the thread count.
#include "pooling/pooling.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "common/parallel.h"

namespace sg {
namespace {

// The storage behind one PoolAxis.
struct AxisTable {
  int64_t in = 0, out = 0, step = 1;
  std::vector<int64_t> start, klo, khi;
  std::vector<float> div;
  std::vector<int64_t> cover_off, cover_o, cover_k;

  PoolAxis view() const {
    return PoolAxis{in, out, step, start.data(), klo.data(), khi.data(), div.data(),
                    cover_off.data(), cover_o.data(), cover_k.data()};
  }
};

// Fills a.cover_* (the inputs' view of the windows) from start/klo/khi/step.
void build_cover(AxisTable& a) {
  a.cover_off.assign(static_cast<size_t>(a.in + 1), 0);
  for (int64_t o = 0; o < a.out; ++o) {
    for (int64_t k = a.klo[o]; k < a.khi[o]; ++k) ++a.cover_off[a.start[o] + k * a.step + 1];
  }
  for (int64_t i = 0; i < a.in; ++i) a.cover_off[i + 1] += a.cover_off[i];
  a.cover_o.resize(static_cast<size_t>(a.cover_off[a.in]));
  a.cover_k.resize(a.cover_o.size());
  std::vector<int64_t> next(a.cover_off.begin(), a.cover_off.end() - 1);
  for (int64_t o = 0; o < a.out; ++o) {  // ascending o: each input's list comes out sorted
    for (int64_t k = a.klo[o]; k < a.khi[o]; ++k) {
      const int64_t j = next[a.start[o] + k * a.step]++;
      a.cover_o[j] = o;
      a.cover_k[j] = k;
    }
  }
}

// A strided window axis: output o's element k at o * stride - pad0 + k * dil, k < kernel.
AxisTable window_axis(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t dil,
                     int64_t pad0) {
  AxisTable a;
  a.in = in;
  a.out = out;
  a.step = dil;
  a.start.resize(out);
  a.klo.resize(out);
  a.khi.resize(out);
  a.div.assign(out, 1.0f);
  for (int64_t o = 0; o < out; ++o) {
    const int64_t s = o * stride - pad0;
    const int64_t lo = s >= 0 ? 0 : (-s + dil - 1) / dil;           // first k with s + k*dil >= 0
    const int64_t hi = s >= in ? 0 : std::min(kernel, (in - s + dil - 1) / dil);  // s + k*dil < in
    a.start[o] = s;
    a.klo[o] = std::min(lo, kernel);
    a.khi[o] = std::max(hi, a.klo[o]);
  }
  build_cover(a);
  return a;
}

// An average pooling axis with torch's divisor factor: the window clipped at the padded edge
// (count_include_pad) or at the input (not).
AxisTable avg_axis(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad0,
                   int64_t pad1, bool count_include_pad) {
  AxisTable a = window_axis(in, out, kernel, stride, 1, pad0);
  for (int64_t o = 0; o < out; ++o) {
    const int64_t s = a.start[o];
    const int64_t n = count_include_pad ? std::min(s + kernel, in + pad1) - s : a.khi[o] - a.klo[o];
    a.div[o] = static_cast<float>(n);
  }
  return a;
}

// Both axes of an average pooling; a divisor override (non-zero) replaces the product.
std::pair<AxisTable, AxisTable> avg_tables(const ConvGeometry& g, bool count_include_pad,
                                           int64_t divisor_override) {
  std::pair<AxisTable, AxisTable> t{avg_axis(g.h, g.oh, g.kh, g.sh, g.ph0, g.ph1, count_include_pad),
                                    avg_axis(g.w, g.ow, g.kw, g.sw, g.pw0, g.pw1, count_include_pad)};
  if (divisor_override != 0) {
    t.first.div.assign(g.oh, static_cast<float>(divisor_override));
    t.second.div.assign(g.ow, 1.0f);
  }
  return t;
}

// torch's adaptive windows: [floor(o * in / out), ceil((o + 1) * in / out)).
AxisTable adaptive_axis(int64_t in, int64_t out) {
  AxisTable a;
  a.in = in;
  a.out = out;
  a.start.resize(out);
  a.klo.assign(out, 0);
  a.khi.resize(out);
  a.div.resize(out);
  for (int64_t o = 0; o < out; ++o) {
    const int64_t s = o * in / out, e = ((o + 1) * in + out - 1) / out;
    a.start[o] = s;
    a.khi[o] = e - s;
    a.div[o] = static_cast<float>(e - s);
  }
  build_cover(a);
  return a;
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

int64_t cover_work(const AxisTable& a) {  // window elements per input position, rounded up
  return a.in ? (a.cover_off[a.in] + a.in - 1) / a.in + 1 : 1;
}

}  // namespace

void max_pool_forward(const ConvGeometry& g, const float* x, float* y, int32_t* argmax) {
  const AxisTable rows = window_axis(g.h, g.oh, g.kh, g.sh, g.dh, g.ph0);
  const AxisTable cols = window_axis(g.w, g.ow, g.kw, g.sw, g.dw, g.pw0);
  const PoolAxis rv = rows.view(), cv = cols.view();
  const PoolingKernels& k = pooling_kernels();
  over_rows(g.n * g.oh, g.ow * g.c_in * g.kh * g.kw, [&](int64_t r0, int64_t r1) {
    k.max_forward(y, argmax, x, g.h, g.w, g.c_in, rv, cv, g.kw, r0, r1);
  });
}

void max_pool_backward(const ConvGeometry& g, const float* dy, const int32_t* argmax, float* dx) {
  const AxisTable rows = window_axis(g.h, g.oh, g.kh, g.sh, g.dh, g.ph0);
  const AxisTable cols = window_axis(g.w, g.ow, g.kw, g.sw, g.dw, g.pw0);
  const PoolAxis rv = rows.view(), cv = cols.view();
  const PoolingKernels& k = pooling_kernels();
  over_rows(g.n * g.h, g.w * g.c_in * cover_work(rows) * cover_work(cols),
            [&](int64_t r0, int64_t r1) {
              k.max_backward(dx, dy, argmax, g.h, g.w, g.c_in, rv, cv, g.kw, r0, r1);
            });
}

void avg_pool_forward(const ConvGeometry& g, bool count_include_pad, int64_t divisor_override,
                      const float* x, float* y) {
  const auto [rows, cols] = avg_tables(g, count_include_pad, divisor_override);
  const PoolAxis rv = rows.view(), cv = cols.view();
  const PoolingKernels& k = pooling_kernels();
  over_rows(g.n * g.oh, g.ow * g.c_in * g.kh * g.kw, [&](int64_t r0, int64_t r1) {
    k.avg_forward(y, x, g.h, g.w, g.c_in, rv, cv, false, r0, r1);
  });
}

void avg_pool_backward(const ConvGeometry& g, bool count_include_pad, int64_t divisor_override,
                       const float* dy, float* dx) {
  const auto [rows, cols] = avg_tables(g, count_include_pad, divisor_override);
  const PoolAxis rv = rows.view(), cv = cols.view();
  const PoolingKernels& k = pooling_kernels();
  over_rows(g.n * g.h, g.w * g.c_in * cover_work(rows) * cover_work(cols),
            [&](int64_t r0, int64_t r1) {
              k.avg_backward(dx, dy, g.h, g.w, g.c_in, rv, cv, false, r0, r1);
            });
}

void adaptive_avg_pool_forward(int64_t n, int64_t h, int64_t w, int64_t c, int64_t oh,
                               int64_t ow, const float* x, float* y) {
  const AxisTable rows = adaptive_axis(h, oh), cols = adaptive_axis(w, ow);
  const PoolAxis rv = rows.view(), cv = cols.view();
  const PoolingKernels& k = pooling_kernels();
  const int64_t win = ((h + oh - 1) / oh + 1) * ((w + ow - 1) / ow + 1);
  over_rows(n * oh, ow * c * win, [&](int64_t r0, int64_t r1) {
    k.avg_forward(y, x, h, w, c, rv, cv, true, r0, r1);
  });
}

void adaptive_avg_pool_backward(int64_t n, int64_t h, int64_t w, int64_t c, int64_t oh,
                                int64_t ow, const float* dy, float* dx) {
  const AxisTable rows = adaptive_axis(h, oh), cols = adaptive_axis(w, ow);
  const PoolAxis rv = rows.view(), cv = cols.view();
  const PoolingKernels& k = pooling_kernels();
  over_rows(n * h, w * c * cover_work(rows) * cover_work(cols), [&](int64_t r0, int64_t r1) {
    k.avg_backward(dx, dy, h, w, c, rv, cv, true, r0, r1);
  });
}

}  // namespace sg
