// Portable optimizer drivers over "segments" (offset, length) of the flat parameter, gradient
// and state buffers: one call updates a whole parameter group, however its parameters are laid
// out. Per-step scalars are computed here once, in double; kernels see floats.
#pragma once
#include <cstdint>

namespace sg {

// count segments; segment i is [off[i], off[i] + len[i]) of every flat buffer. For the update
// drivers the segments must be sorted and disjoint (the binding checks it).
struct Segments {
  const int64_t* off;
  const int64_t* len;
  int64_t count;
};

// Gradient prologue shared by every step: g' = clamp(g * scale, -clip, clip), sign folded in.
struct GradPreHyper {
  double grad_scale = 1.0;   // global-norm clip coefficient (1 when not clipping)
  double clip_value = -1.0;  // value clipping bound; negative, NaN or inf means off
  bool maximize = false;
};

struct AdamHyper {
  GradPreHyper pre;
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;  // the step being taken, >= 1 (bias corrections use it)
  bool amsgrad, decoupled;
};

struct RmspropHyper {
  GradPreHyper pre;
  double lr, alpha, eps, weight_decay, momentum;
  bool centered;
};

struct SgdHyper {
  GradPreHyper pre;
  double lr, momentum, dampening, weight_decay;
  bool nesterov;
  bool first;  // momentum buffer uninitialised for these segments
};

struct AdagradHyper {
  GradPreHyper pre;
  double lr, lr_decay, weight_decay, eps;
  int64_t step;  // the step being taken, >= 1 (clr = lr / (1 + (step - 1) * lr_decay))
};

struct NadamHyper {
  GradPreHyper pre;
  double lr, beta1, beta2, eps, weight_decay, momentum_decay;
  int64_t step;       // the step being taken, >= 1
  double mu_product;  // prod of mu over the steps before this one (a float32 value, as torch's)
  bool decoupled;
};

// Per-segment gradient norms and the global norm, read-only, one sweep. inf_norm selects max|g|
// (NaN if any NaN), otherwise the 2-norm: each segment is summed in fixed 8192-element chunks
// of 16 double lanes (chunked_reduce.h, as sumsq_f32), segments then combined in order, so
// per_seg and the result are bitwise identical for every thread count and ISA. A non-finite
// gradient gives a non-finite segment norm. per_seg has `count` entries.
double grad_norms(const float* g, Segments s, bool inf_norm, double* per_seg);
// One segment's accumulation as grad_norms makes it, before any square root: the sum of squares
// (inf_norm: max|g|, NaN if any NaN) of g[0, n), chunk by chunk in order, so that
// grad_norms' per_seg[i] is sqrt(grad_norm_partial(g + off[i], len[i], false)) bitwise, and its
// total the square root of these partials added in segment order. The compiled step computes
// it as each layer's backward has written its gradients (still in cache).
double grad_norm_partial(const float* g, int64_t n, bool inf_norm);
// grad_norms' last part, in place: per_seg[count] holds the segments' partials (in segment
// order) and leaves as their norms; returns the total norm. grad_norms is accumulate + this.
double combine_norm_partials(double* per_seg, int64_t count, bool inf_norm);

void adam_step(float* p, float* m, float* v, float* vmax, const float* g, Segments s,
               const AdamHyper& h);
void rmsprop_step(float* p, float* sq, float* gavg, float* buf, const float* g, Segments s,
                  const RmspropHyper& h);
void sgd_step(float* p, float* buf, const float* g, Segments s, const SgdHyper& h);
void adagrad_step(float* p, float* sum, const float* g, Segments s, const AdagradHyper& h);
// Returns mu_product after this step: float32(h.mu_product) * float32(mu_t), as torch's
// float32 `mu_product *= mu`.
double nadam_step(float* p, float* m, float* v, const float* g, Segments s, const NadamHyper& h);
// g = clamp(g * scale, -clip, clip) over the segments, in place.
void scale_clamp_step(float* g, Segments s, const GradPreHyper& h);

}  // namespace sg
