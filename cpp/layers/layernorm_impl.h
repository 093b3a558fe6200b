// LayerNorm kernels over V (layernorm.h). Included once per ISA translation unit after
// vec_*.h. A row is one unit of work: its sums run in a fixed order (kLnUnroll interleaved
// vector accumulators, combined pairwise, then the scalar tail), and the row is one thread's,
// so the results do not depend on the thread count. dgamma/dbeta are column sums over the
// rows, in colreduce_impl.h's fixed order (threads split column tiles, never rows).
#pragma once
#include <cmath>
#include <cstdint>

#include "common/parallel.h"
#include "layers/colreduce_impl.h"
#include "layers/layernorm.h"

namespace sg {
namespace {

constexpr int kLnUnroll = 4;  // independent accumulators per sum: the adds' latency overlaps
static_assert(kLnUnroll == 4, "ln_row_sums combines exactly four accumulators");

// out[q] = the q-th of NF sums over one row of d: vec(off, acc) adds the row's vector at
// [off, off + V::W) into acc[0..NF); tail(j, out) adds element j (the last d % V::W) to out.
template <int NF, class Vec, class Tail>
inline void ln_row_sums(float (&out)[NF], int64_t d, Vec vec, Tail tail) {
  constexpr int W = V::W;
  V::R acc[kLnUnroll][NF];
  for (int u = 0; u < kLnUnroll; ++u)
    for (int q = 0; q < NF; ++q) acc[u][q] = V::zero();
  int64_t j = 0;
  for (; j + kLnUnroll * W <= d; j += kLnUnroll * W) {
    for (int u = 0; u < kLnUnroll; ++u) vec(j + u * W, acc[u]);
  }
  for (; j + W <= d; j += W) vec(j, acc[0]);
  for (int q = 0; q < NF; ++q) {
    out[q] = V::reduce_add(V::add(V::add(acc[0][q], acc[1][q]), V::add(acc[2][q], acc[3][q])));
  }
  for (; j < d; ++j) tail(j, out);
}

// body(off, cnt) over one row of d in vectors: the full ones (cnt == V::W), then the tail.
template <class Body>
inline void ln_row_vectors(int64_t d, Body body) { tile_vectors(0, d, body); }

// body(i) for every row, in parallel when the call has enough elements (each row one thread's).
template <class Body>
inline void ln_rows(int64_t n, int64_t d, Body body) {
  const bool par = n * d >= kElementwiseParallelMin && n > 1 && num_threads() > 1;
#pragma omp parallel for schedule(static) if (par) num_threads(num_threads())
  for (int64_t i = 0; i < n; ++i) body(i);
}

// Row statistics: m0 = sum(x) / d, then the corrected two-pass (sum of x - m0 and of its
// square, both in one pass): mean = m0 + c and var = sum((x - m0)^2) / d - c^2 with
// c = sum(x - m0) / d, which removes the rounding error of m0 from both.
inline void ln_row_stats(const float* xr, int64_t d, float eps, float* mean, float* rstd) {
  float s[1];
  ln_row_sums<1>(s, d, [&](int64_t off, V::R* acc) { acc[0] = V::add(acc[0], V::load(xr + off)); },
                 [&](int64_t j, float* o) { o[0] += xr[j]; });
  const float m0 = s[0] / static_cast<float>(d);
  const V::R vm0 = V::set1(m0);
  float t[2];
  ln_row_sums<2>(
      t, d,
      [&](int64_t off, V::R* acc) {
        const V::R dv = V::sub(V::load(xr + off), vm0);
        acc[0] = V::add(acc[0], dv);
        acc[1] = V::fma(dv, dv, acc[1]);
      },
      [&](int64_t j, float* o) {
        const float dv = xr[j] - m0;
        o[0] += dv;
        o[1] += dv * dv;
      });
  const double c = static_cast<double>(t[0]) / static_cast<double>(d);
  double var = static_cast<double>(t[1]) / static_cast<double>(d) - c * c;
  if (var < 0.0) var = 0.0;  // rounding of a (near) constant row; NaN stays NaN
  *mean = static_cast<float>(static_cast<double>(m0) + c);
  *rstd = static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(eps)));
}

template <bool G, bool B>
void ln_forward_t(float* y, float* mean, float* rstd, const float* x, const float* gamma,
                  const float* beta, int64_t n, int64_t d, float eps) {
  ln_rows(n, d, [&](int64_t i) {
    const float* xr = x + i * d;
    float* yr = y + i * d;
    ln_row_stats(xr, d, eps, mean + i, rstd + i);
    const V::R vm = V::set1(mean[i]), vr = V::set1(rstd[i]);
    ln_row_vectors(d, [&](int64_t off, int64_t cnt) {
      V::R r = V::mul(V::sub(load_cnt(xr + off, cnt), vm), vr);
      if constexpr (G && B) r = V::fma(r, load_cnt(gamma + off, cnt), load_cnt(beta + off, cnt));
      else if constexpr (G) r = V::mul(r, load_cnt(gamma + off, cnt));
      else if constexpr (B) r = V::add(r, load_cnt(beta + off, cnt));
      store_cnt(yr + off, r, cnt);
    });
  });
}

void ln_forward(float* y, float* mean, float* rstd, const float* x, const float* gamma,
                const float* beta, int64_t n, int64_t d, float eps) {
  if (n <= 0 || d <= 0) return;
  if (gamma && beta) ln_forward_t<true, true>(y, mean, rstd, x, gamma, beta, n, d, eps);
  else if (gamma) ln_forward_t<true, false>(y, mean, rstd, x, gamma, beta, n, d, eps);
  else if (beta) ln_forward_t<false, true>(y, mean, rstd, x, gamma, beta, n, d, eps);
  else ln_forward_t<false, false>(y, mean, rstd, x, gamma, beta, n, d, eps);
}

// dgamma[j] = sum_i dy[i, j] * xhat[i, j] and dbeta[j] = sum_i dy[i, j], either may be null.
void ln_param_grads(float* dgamma, float* dbeta, const float* dy, const float* x,
                    const float* mean, const float* rstd, int64_t n, int64_t d, float acc_gamma,
                    float acc_beta) {
  auto dyxh = [&](int64_t i, int64_t off, int64_t cnt) {
    const V::R xc = V::sub(load_cnt(x + i * d + off, cnt), V::set1(mean[i]));
    return V::mul(load_cnt(dy + i * d + off, cnt), V::mul(xc, V::set1(rstd[i])));
  };
  auto dyv = [&](int64_t i, int64_t off, int64_t cnt) { return load_cnt(dy + i * d + off, cnt); };
  auto put = [](float* p, const double* s, int64_t j0, int64_t w, float acc) {
    for (int64_t j = 0; j < w; ++j) {
      p[j0 + j] = static_cast<float>(acc != 0.0f ? p[j0 + j] + s[j] : s[j]);
    }
  };
  for_col_tiles(n, d, [&](int64_t j0, int64_t w) {
    double sg[kColTile], sb[kColTile];
    if (dgamma && dbeta) {
      double* const sums[2] = {sg, sb};
      tile_reduce_n(sums, n, j0, w, dyxh, dyv);
    } else if (dgamma) {
      tile_reduce(sg, n, j0, w, dyxh);
    } else {
      tile_reduce(sb, n, j0, w, dyv);
    }
    if (dgamma) put(dgamma, sg, j0, w, acc_gamma);
    if (dbeta) put(dbeta, sb, j0, w, acc_beta);
  });
}

template <bool G>
void ln_grad_input_t(float* dx, const float* dy, const float* x, const float* mean,
                     const float* rstd, const float* gamma, int64_t n, int64_t d) {
  ln_rows(n, d, [&](int64_t i) {
    const float* xr = x + i * d;
    const float* dyr = dy + i * d;
    float* dxr = dx + i * d;
    const float m = mean[i], r = rstd[i];
    const V::R vm = V::set1(m), vr = V::set1(r);
    auto gv = [&](int64_t off, int64_t cnt) {
      const V::R g = load_cnt(dyr + off, cnt);
      return G ? V::mul(g, load_cnt(gamma + off, cnt)) : g;
    };
    auto xhv = [&](int64_t off, int64_t cnt) {
      return V::mul(V::sub(load_cnt(xr + off, cnt), vm), vr);
    };
    float s[2];
    ln_row_sums<2>(
        s, d,
        [&](int64_t off, V::R* acc) {
          const V::R g = gv(off, V::W);
          acc[0] = V::add(acc[0], g);
          acc[1] = V::fma(g, xhv(off, V::W), acc[1]);
        },
        [&](int64_t j, float* o) {
          const float g = G ? dyr[j] * gamma[j] : dyr[j];
          o[0] += g;
          o[1] += g * ((xr[j] - m) * r);
        });
    const float inv_d = 1.0f / static_cast<float>(d);
    const V::R va = V::set1(s[0] * inv_d), vb = V::set1(s[1] * inv_d);
    // every element of the row was read by the sums; each store follows its own loads
    ln_row_vectors(d, [&](int64_t off, int64_t cnt) {
      const V::R t = V::fnma(xhv(off, cnt), vb, V::sub(gv(off, cnt), va));
      store_cnt(dxr + off, V::mul(t, vr), cnt);
    });
  });
}

void ln_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                 const float* mean, const float* rstd, const float* gamma, int64_t n, int64_t d,
                 float acc_gamma, float acc_beta) {
  if (d <= 0) return;
  if (dgamma || dbeta) ln_param_grads(dgamma, dbeta, dy, x, mean, rstd, n, d, acc_gamma, acc_beta);
  if (!dx || n <= 0) return;
  if (gamma) ln_grad_input_t<true>(dx, dy, x, mean, rstd, gamma, n, d);
  else ln_grad_input_t<false>(dx, dy, x, mean, rstd, gamma, n, d);
}

}  // namespace
}  // namespace sg
