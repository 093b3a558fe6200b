// FMA-throughput probe per ISA: the single-thread floating-point peak that GEMM benchmarks
// report their efficiency against. Not a kernel: it only measures the machine.
#pragma once

#include "isa/dispatch.h"

namespace sg {

// Runs independent FMA chains over V for about `seconds` of the calling thread's CPU time
// (wall time where the OS has no thread clock) and returns
// the achieved GFLOP/s (2 flops per FMA lane). On the generic path "FMA" is a multiply then an
// add (vec_generic.h), so this is that path's peak, not the hardware's.
using FmaPeakFn = double (*)(double seconds);

extern const FmaPeakFn fma_peak__generic;
#if defined(SG_X86)
extern const FmaPeakFn fma_peak__avx2;
extern const FmaPeakFn fma_peak__avx512;
#endif

// The probe for one ISA (which must be supported), independent of the active path.
inline FmaPeakFn fma_peak(Isa isa) {
#if defined(SG_X86)
  if (isa == Isa::avx512) return fma_peak__avx512;
  if (isa == Isa::avx2) return fma_peak__avx2;
#endif
  (void)isa;
  return fma_peak__generic;
}

}  // namespace sg
