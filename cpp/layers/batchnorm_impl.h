// BatchNorm1d kernels over V. Included once per ISA TU. Each column tile (64 channels) is one
// unit of work: reduce over the batch, then one elementwise pass over the same tile while it
// is still in cache. Statistics are combined in double, like torch's CPU kernel.
#pragma once
#include <cmath>
#include <cstdint>

#include "layers/batchnorm.h"
#include "layers/colreduce_impl.h"

namespace sg {
namespace {

// y = (x - mean) * k + beta per column of the tile, with k = gamma * invstd; then max(0, y)
// when relu (zero first: x86 max returns its second operand for NaN, as the relu kernel).
template <bool Relu>
inline void bn_apply_t(float* y, const float* x, const float* mean, const float* k,
                       const float* shift, int64_t n, int64_t c, int64_t j0, int64_t w) {
  for (int64_t i = 0; i < n; ++i) {
    tile_vectors(j0, w, [&](int64_t off, int64_t cnt) {
      const V::R xc = V::sub(load_cnt(x + i * c + off, cnt), load_cnt(mean + off - j0, cnt));
      V::R r = V::fma(xc, load_cnt(k + off - j0, cnt), load_cnt(shift + off - j0, cnt));
      if constexpr (Relu) r = V::max(V::zero(), r);
      store_cnt(y + i * c + off, r, cnt);
    });
  }
}

inline void bn_apply(float* y, const float* x, const float* mean, const float* k,
                     const float* shift, int64_t n, int64_t c, int64_t j0, int64_t w, bool relu) {
  if (relu) bn_apply_t<true>(y, x, mean, k, shift, n, c, j0, w);
  else bn_apply_t<false>(y, x, mean, k, shift, n, c, j0, w);
}

// dy masked as relu_backward (threshold_backward) by the fused forward's output: 0 where it
// is <= 0 (even for dy = NaN), dy where it is > 0 or NaN. Mask::output reads that output y;
// Mask::input recomputes it from x exactly as bn_apply_t did (same operations, same order:
// the same bits), so the output need not be kept; Mask::none leaves dy unchanged. The tile
// arrays (mean, k, shift) are indexed by t = column - j0.
enum class Mask { none, output, input };

template <Mask M>
inline V::R bn_dy(const float* dy, const float* y, const float* x, const float* mean,
                  const float* k, const float* shift, int64_t idx, int64_t t, int64_t cnt) {
  const V::R d = load_cnt(dy + idx, cnt);
  if constexpr (M == Mask::none) {
    return d;
  } else if constexpr (M == Mask::output) {
    return V::select(V::le(load_cnt(y + idx, cnt), V::zero()), V::zero(), d);
  } else {
    const V::R xc = V::sub(load_cnt(x + idx, cnt), load_cnt(mean + t, cnt));
    const V::R pre = V::fma(xc, load_cnt(k + t, cnt), load_cnt(shift + t, cnt));
    return V::select(V::le(pre, V::zero()), V::zero(), d);
  }
}

void bn_forward_train(float* y, float* save_mean, float* save_invstd, float* running_mean,
                      float* running_var, const float* x, const float* gamma, const float* beta,
                      int64_t n, int64_t c, float eps, float momentum,
                      bool relu) {
  if (c <= 0) return;
  for_col_tiles(n, c, [&](int64_t j0, int64_t w) {
    double sum[kColTile], ssq[kColTile];
    alignas(64) float mean[kColTile], k[kColTile], shift[kColTile];
    tile_reduce(sum, n, j0, w, [&](int64_t i, int64_t off, int64_t cnt) {
      return load_cnt(x + i * c + off, cnt);
    });
    for (int64_t j = 0; j < w; ++j) mean[j] = static_cast<float>(sum[j] / static_cast<double>(n));
    // Two-pass variance (sum of squared deviations) avoids the cancellation of E[x^2] - E[x]^2.
    tile_reduce(ssq, n, j0, w, [&](int64_t i, int64_t off, int64_t cnt) {
      const V::R d = V::sub(load_cnt(x + i * c + off, cnt), load_cnt(mean + off - j0, cnt));
      return V::mul(d, d);
    });
    for (int64_t j = 0; j < w; ++j) {
      const int64_t ch = j0 + j;
      const double var = ssq[j] / static_cast<double>(n);
      const float invstd = static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(eps)));
      save_mean[ch] = mean[j];
      save_invstd[ch] = invstd;
      const float g = gamma ? gamma[ch] : 1.0f;
      k[j] = g * invstd;
      shift[j] = beta ? beta[ch] : 0.0f;
      if (running_mean) {
        const double m = momentum;
        const double unbiased = n > 1 ? ssq[j] / static_cast<double>(n - 1) : var;
        running_mean[ch] = static_cast<float>((1.0 - m) * running_mean[ch] + m * (sum[j] / static_cast<double>(n)));
        running_var[ch] = static_cast<float>((1.0 - m) * running_var[ch] + m * unbiased);
      }
    }
    bn_apply(y, x, mean, k, shift, n, c, j0, w, relu);
  });
}

void bn_forward_eval(float* y, float* save_mean, float* save_invstd, const float* x,
                     const float* mean, const float* var, const float* gamma, const float* beta,
                     int64_t n, int64_t c, float eps, bool relu) {
  if (c <= 0) return;
  for_col_tiles(n, c, [&](int64_t j0, int64_t w) {
    alignas(64) float m[kColTile], k[kColTile], shift[kColTile];
    for (int64_t j = 0; j < w; ++j) {
      const int64_t ch = j0 + j;
      const float invstd = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var[ch]) + eps));
      m[j] = mean[ch];
      save_mean[ch] = mean[ch];
      save_invstd[ch] = invstd;
      k[j] = (gamma ? gamma[ch] : 1.0f) * invstd;
      shift[j] = beta ? beta[ch] : 0.0f;
    }
    bn_apply(y, x, m, k, shift, n, c, j0, w, relu);
  });
}

template <Mask M>
void bn_backward_t(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                   const float* y, const float* save_mean, const float* save_invstd,
                   const float* gamma, const float* beta, int64_t n, int64_t c, bool batch_stats,
                   float acc_gamma, float acc_beta, const float* sums, int64_t count) {
  for_col_tiles(n, c, [&](int64_t j0, int64_t w) {
    double sdy[kColTile], sdyx[kColTile];
    alignas(64) float a[kColTile], b[kColTile], k[kColTile], shift[kColTile];
    const float* mean = save_mean + j0;
    const float* invstd = save_invstd + j0;
    for (int64_t j = 0; j < w; ++j) {
      const int64_t ch = j0 + j;
      k[j] = (gamma ? gamma[ch] : 1.0f) * invstd[j];  // the forward's k, bit for bit
      shift[j] = beta ? beta[ch] : 0.0f;
    }
    auto dy_at = [&](int64_t idx, int64_t t, int64_t cnt) {
      return bn_dy<M>(dy, y, x, mean, k, shift, idx, t, cnt);
    };
    // sum dy and sum dy * xhat (xhat = (x - mean) * invstd recomputed: nothing but x is
    // cached), in one pass over the rows.
    if (sums) {  // the whole batch's sums, given (SyncBatchNorm): nothing to reduce here
      for (int64_t j = 0; j < w; ++j) {
        sdy[j] = sums[j0 + j];
        sdyx[j] = sums[c + j0 + j];
      }
    } else {
      double* const both[2] = {sdy, sdyx};
      tile_reduce_n(
          both, n, j0, w,
          [&](int64_t i, int64_t off, int64_t cnt) { return dy_at(i * c + off, off - j0, cnt); },
          [&](int64_t i, int64_t off, int64_t cnt) {
            const V::R xc = V::sub(load_cnt(x + i * c + off, cnt), load_cnt(mean + off - j0, cnt));
            const V::R xh = V::mul(xc, load_cnt(invstd + off - j0, cnt));
            return V::mul(dy_at(i * c + off, off - j0, cnt), xh);
          });
    }
    const double rows = static_cast<double>(sums ? count : n);
    for (int64_t j = 0; j < w; ++j) {
      const int64_t ch = j0 + j;
      if (dgamma) dgamma[ch] = static_cast<float>(acc_gamma != 0.0f ? dgamma[ch] + sdyx[j] : sdyx[j]);
      if (dbeta) dbeta[ch] = static_cast<float>(acc_beta != 0.0f ? dbeta[ch] + sdy[j] : sdy[j]);
      a[j] = batch_stats ? static_cast<float>(sdy[j] / rows) : 0.0f;
      // b multiplies (x - mean), so it folds in one invstd of xhat: invstd * mean(dy * xhat).
      b[j] = batch_stats ? static_cast<float>(sdyx[j] / rows) * invstd[j] : 0.0f;
    }
    if (!dx) return;
    // dx = k * (dy - mean(dy) - xhat * mean(dy * xhat)); every read of element (i, off)
    // happens before its store, so dx may be dy, x or y itself.
    for (int64_t i = 0; i < n; ++i) {
      tile_vectors(j0, w, [&](int64_t off, int64_t cnt) {
        const int64_t t = off - j0;
        const V::R xc = V::sub(load_cnt(x + i * c + off, cnt), load_cnt(mean + t, cnt));
        V::R g = V::sub(dy_at(i * c + off, t, cnt), load_cnt(a + t, cnt));
        g = V::fnma(xc, load_cnt(b + t, cnt), g);
        store_cnt(dx + i * c + off, V::mul(g, load_cnt(k + t, cnt)), cnt);
      });
    }
  });
}

void bn_backward(float* dx, float* dgamma, float* dbeta, const float* dy, const float* x,
                 const float* y, const float* save_mean, const float* save_invstd,
                 const float* gamma, const float* beta, int64_t n, int64_t c, bool batch_stats,
                 float acc_gamma, float acc_beta, bool relu, const float* sums,
                 int64_t count) {
  if (c <= 0) return;
  if (!relu) {
    bn_backward_t<Mask::none>(dx, dgamma, dbeta, dy, x, y, save_mean, save_invstd, gamma, beta,
                              n, c, batch_stats, acc_gamma, acc_beta, sums, count);
  } else if (y) {
    bn_backward_t<Mask::output>(dx, dgamma, dbeta, dy, x, y, save_mean, save_invstd, gamma,
                                beta, n, c, batch_stats, acc_gamma, acc_beta, sums, count);
  } else {
    bn_backward_t<Mask::input>(dx, dgamma, dbeta, dy, x, y, save_mean, save_invstd, gamma,
                               beta, n, c, batch_stats, acc_gamma, acc_beta, sums, count);
  }
}

}  // namespace
}  // namespace sg
