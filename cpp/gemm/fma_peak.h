// FMA-throughput probe per ISA: the single-thread floating-point peak that GEMM benchmarks
// report their efficiency against. Not a kernel: it only measures the machine.
#pragma once

#include "isa/dispatch_table.h"

namespace sg {

// Runs independent FMA chains over V for about `seconds` of the calling thread's CPU time
// (wall time where the OS has no thread clock) and returns
// the achieved GFLOP/s (2 flops per FMA lane). On the generic path "FMA" is a multiply then an
// add (vec_generic.h), so this is that path's peak, not the hardware's.
using FmaPeakFn = double (*)(double seconds);

// fma_peak(isa): the probe for one ISA (which must be supported), independent of the active path.
SG_DECLARE_DISPATCH(FmaPeakFn, fma_peak, fma_peak);

}  // namespace sg
