// Optimizer drivers: per-step scalars in double, the thread split over a group's segments, and
// the deterministic segmented norm pass. No ISA code here (see optim_kernels.h).
#include "optim/optim.h"

#include <omp.h>

#include <cmath>
#include <limits>

#include "common/parallel.h"
#include "optim/optim_kernels.h"
#include "reduce/chunked_reduce.h"
#include "reduce/norm.h"

namespace sg {
namespace {

int64_t total_length(Segments s) {
  int64_t t = 0;
  for (int64_t i = 0; i < s.count; ++i) t += s.len[i];
  return t;
}

// Calls body(offset, length) over pieces covering every segment. The concatenated index space
// is split into one contiguous range per thread (multiples of 16 elements), so a group of many
// small parameters still costs one fork/join. Updates are elementwise and the kernels treat
// every element alike, so results do not depend on where the pieces are cut.
template <class Body>
void for_each_piece(Segments s, Body body) {
  const int64_t total = total_length(s);
  if (total == 0) return;
  if (total < kElementwiseParallelMin || num_threads() < 2) {
    for (int64_t i = 0; i < s.count; ++i) body(s.off[i], s.len[i]);
    return;
  }
#pragma omp parallel num_threads(num_threads())
  {
    const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t units = (total + 15) / 16;
    int64_t begin = units * t / nt * 16, end = units * (t + 1) / nt * 16;
    if (end > total) end = total;
    int64_t base = 0;  // concatenated index of segment i's start
    for (int64_t i = 0; i < s.count && base < end; base += s.len[i], ++i) {
      const int64_t lo = begin > base ? begin : base;
      const int64_t hi = end < base + s.len[i] ? end : base + s.len[i];
      if (lo < hi) body(s.off[i] + (lo - base), hi - lo);
    }
  }
}

// at::lerp's scalars for weight w (computed in double, as torch's scalar weight).
LerpArgs make_lerp(double w) {
  LerpArgs l;
  l.weight = static_cast<float>(w);
  l.rest = static_cast<float>(1.0 - w);
  l.small = std::fabs(w) < 0.5;
  return l;
}

// The moment update of AdamHyper or NadamHyper h (lr, beta1, beta2, weight_decay, decoupled):
// decay mode and factors, m's lerp weight 1 - beta1, beta2.
template <class H>
MomentArgs make_moments(const H& h) {
  MomentArgs a;
  a.wd_mode = h.weight_decay == 0.0 ? WeightDecay::none
              : h.decoupled         ? WeightDecay::decoupled
                                    : WeightDecay::coupled;
  a.weight_decay = static_cast<float>(h.weight_decay);
  a.decay_factor = static_cast<float>(1.0 - h.lr * h.weight_decay);
  a.m_lerp = make_lerp(1.0 - h.beta1);
  a.beta2 = static_cast<float>(h.beta2);
  a.one_minus_beta2 = static_cast<float>(1.0 - h.beta2);
  return a;
}

GradPre make_pre(const GradPreHyper& h) {
  GradPre p;
  p.grad_scale = static_cast<float>(h.maximize ? -h.grad_scale : h.grad_scale);
  p.clip_value = (h.clip_value >= 0.0 && std::isfinite(h.clip_value))
                     ? static_cast<float>(h.clip_value)
                     : std::numeric_limits<float>::infinity();
  return p;
}


// per_seg[i] = segment i's chunk partials combined in order (the sum of squares, or max|g|).
void grad_norms_accumulate(const float* g, Segments s, bool inf_norm, double* per_seg) {
  for (int64_t i = 0; i < s.count; ++i) per_seg[i] = 0.0;
  // A read-only pass over fewer elements than this is not worth a fork/join.
  chunked_reduce(
      s.count, [s](int64_t i) { return s.len[i]; }, 2 * kElementwiseParallelMin,
      [&](int64_t i, int64_t b, int64_t n) {
        const float* x = g + s.off[i] + b;
        return inf_norm ? absmax_chunk(x, n) : sumsq_chunk(x, n);
      },
      [&](int64_t i, double p) {
        if (inf_norm) max_or_nan(&per_seg[i], p);
        else per_seg[i] += p;
      });
}

}  // namespace

double grad_norms(const float* g, Segments s, bool inf_norm, double* per_seg) {
  grad_norms_accumulate(g, s, inf_norm, per_seg);
  return combine_norm_partials(per_seg, s.count, inf_norm);
}

double combine_norm_partials(double* per_seg, int64_t count, bool inf_norm) {
  // Fixed-order combine of the segments.
  double total = 0.0;
  for (int64_t i = 0; i < count; ++i) {
    if (inf_norm) {
      max_or_nan(&total, per_seg[i]);
    } else {
      total += per_seg[i];
      per_seg[i] = std::sqrt(per_seg[i]);
    }
  }
  return inf_norm ? total : std::sqrt(total);
}

double grad_norm_partial(const float* g, int64_t n, bool inf_norm) {
  const int64_t off = 0;
  double acc = 0.0;
  grad_norms_accumulate(g, Segments{&off, &n, 1}, inf_norm, &acc);
  return acc;
}

void adam_step(float* p, float* m, float* v, float* vmax, const float* g, Segments s,
               const AdamHyper& h) {
  AdamArgs a;
  a.pre = make_pre(h.pre);
  a.moments = make_moments(h);
  const double t = static_cast<double>(h.step);
  const double bc1 = 1.0 - std::pow(h.beta1, t), bc2 = 1.0 - std::pow(h.beta2, t);
  a.inv_bc2_sqrt = static_cast<float>(1.0 / std::sqrt(bc2));
  a.eps = static_cast<float>(h.eps);
  a.step_size = static_cast<float>(h.lr / bc1);
  a.amsgrad = h.amsgrad;
  const OptimKernels& k = optim_kernels();
  for_each_piece(s, [&](int64_t off, int64_t n) {
    k.adam(p + off, m + off, v + off, vmax ? vmax + off : nullptr, g + off, n, a);
  });
}

void rmsprop_step(float* p, float* sq, float* gavg, float* buf, const float* g, Segments s,
                  const RmspropHyper& h) {
  RmspropArgs a;
  a.pre = make_pre(h.pre);
  a.weight_decay = static_cast<float>(h.weight_decay);
  a.alpha = static_cast<float>(h.alpha);
  a.avg_lerp = make_lerp(1.0 - h.alpha);
  a.eps = static_cast<float>(h.eps);
  a.lr = static_cast<float>(h.lr);
  a.momentum = static_cast<float>(h.momentum);
  a.centered = h.centered;
  a.use_momentum = h.momentum > 0.0;
  const OptimKernels& k = optim_kernels();
  for_each_piece(s, [&](int64_t off, int64_t n) {
    k.rmsprop(p + off, sq + off, gavg ? gavg + off : nullptr, buf ? buf + off : nullptr, g + off,
              n, a);
  });
}

void sgd_step(float* p, float* buf, const float* g, Segments s, const SgdHyper& h) {
  SgdArgs a;
  a.pre = make_pre(h.pre);
  a.weight_decay = static_cast<float>(h.weight_decay);
  a.momentum = static_cast<float>(h.momentum);
  a.one_minus_dampening = static_cast<float>(1.0 - h.dampening);
  a.lr = static_cast<float>(h.lr);
  a.nesterov = h.nesterov;
  a.first = h.first;
  const OptimKernels& k = optim_kernels();
  for_each_piece(s, [&](int64_t off, int64_t n) {
    k.sgd(p + off, buf ? buf + off : nullptr, g + off, n, a);
  });
}

void adagrad_step(float* p, float* sum, const float* g, Segments s, const AdagradHyper& h) {
  AdagradArgs a;
  a.pre = make_pre(h.pre);
  a.weight_decay = static_cast<float>(h.weight_decay);
  a.eps = static_cast<float>(h.eps);
  a.clr = static_cast<float>(h.lr / (1.0 + static_cast<double>(h.step - 1) * h.lr_decay));
  const OptimKernels& k = optim_kernels();
  for_each_piece(s, [&](int64_t off, int64_t n) { k.adagrad(p + off, sum + off, g + off, n, a); });
}

double nadam_step(float* p, float* m, float* v, const float* g, Segments s, const NadamHyper& h) {
  NadamArgs a;
  a.pre = make_pre(h.pre);
  a.moments = make_moments(h);
  const double t = static_cast<double>(h.step);
  a.bc2 = static_cast<float>(1.0 - std::pow(h.beta2, t));
  a.eps = static_cast<float>(h.eps);
  // The momentum cache mu_t and mu_{t+1} (Dozat 2016, with torch's 0.96 schedule).
  const double mu = h.beta1 * (1.0 - 0.5 * std::pow(0.96, t * h.momentum_decay));
  const double mu_next = h.beta1 * (1.0 - 0.5 * std::pow(0.96, (t + 1.0) * h.momentum_decay));
  const double mu_product = static_cast<float>(h.mu_product) * static_cast<float>(mu);
  a.grad_coef = static_cast<float>(-h.lr * (1.0 - mu) / (1.0 - mu_product));
  a.avg_coef = static_cast<float>(-h.lr * mu_next / (1.0 - mu_product * mu_next));
  const OptimKernels& k = optim_kernels();
  for_each_piece(s, [&](int64_t off, int64_t n) {
    k.nadam(p + off, m + off, v + off, g + off, n, a);
  });
  return mu_product;
}

void scale_clamp_step(float* g, Segments s, const GradPreHyper& h) {
  const GradPre pre = make_pre(h);
  const OptimKernels& k = optim_kernels();
  for_each_piece(s, [&](int64_t off, int64_t n) { k.scale_clamp(g + off, n, pre); });
}

}  // namespace sg
