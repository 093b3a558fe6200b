// The convolution's implicit GEMM on the indirect microkernel (GemmUkernel::igemm, after
// Dukhan's "The Indirect Convolution Algorithm", 2019, as XNNPACK's igemm): C (m, n) = A B with
// A an ImageGather (never packed: each MR-row tile reads its window taps' channel runs in place
// through a table of row pointers) and B a gathered weight, packed once per call.
#pragma once
#include <cstdint>

#include "common/activation.h"
#include "conv/conv_gather.h"
#include "gemm/gemm.h"

namespace sg::conv_gather {

// The same blocking (k blocks, epilogue per block) and FMA chain as gemm_f32_src with a_src =
// pack_image over `a`, so the result is bitwise that GEMM's, for any thread count. beta = 0.
void conv_igemm(const ImageGather& a, const GemmPackSource& b, int64_t m, int64_t n, int64_t k,
                float* c, int64_t ldc, const float* bias, Activation act);

// Whether conv_igemm beats the packed gather for this source: each run (a window row of kw * nch
// floats when windows are dense, else one tap's nch) must be at least kMinRun k steps, or the
// per-run pointer loads and loop entry cost more than the copies they save (measured by callgrind
// on C2's stem, 3 channels: +7.5% instructions through the indirect kernel). Either way the
// result is bitwise the same. Never under bf16 precision (the gather path rounds A as it packs).
constexpr int64_t kIgemmMinRun = 16;
bool conv_igemm_pays(const ImageGather& a);

// What conv_igemm grows: the whole packed B in the caller's shared-B buffer (the row-pointer
// tables per thread are a few hundred bytes, not counted).
GemmWorkspace conv_igemm_workspace(int64_t m, int64_t n, int64_t k, int64_t threads);

}  // namespace sg::conv_gather
