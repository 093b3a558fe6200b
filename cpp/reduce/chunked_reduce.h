// The one deterministic chunked reduction, used by the norms (norm.cpp), the elementwise
// losses (layers/elem_loss.cpp) and the optimizer's norm pass (optim.cpp): fixed chunks, one double partial per
// chunk, partials combined in index order. No kernel here: callers pass what a chunk computes.
#pragma once
#include <omp.h>

#include "common/parallel.h"

#include <cstdint>

namespace sg {

// The blocking that makes every result independent of the thread count (and, with the lane
// layout, of the ISA): chunks of kReduceChunk elements from each segment's start, each chunk's
// squares in kReduceLanes double lanes (lane = index mod 16, see sq_lanes_impl.h).
constexpr int64_t kReduceChunk = 8192;
constexpr int kReduceLanes = 16;

// A chunk's lanes summed in lane order.
inline double sum_lanes(const double* lanes) {
  double s = 0.0;
  for (int l = 0; l < kReduceLanes; ++l) s += lanes[l];
  return s;
}

// Chunks per parallel region: their partials sit in a stack array (16 KiB with the chunk list),
// so no call allocates. The regions run one after another and combine in the order one region
// would; 4M elements per region make the extra fork/joins cost well under 1% of a pass.
constexpr int64_t kReduceBlock = 512;

// Calls partial(seg, begin, len), which returns a double, for every chunk [begin, begin + len) of
// each segment seg in [0, nseg) of seg_len(seg) elements (len <= kReduceChunk); concurrently
// when there are at least 4 chunks, at least `min_parallel` elements in all and more than one
// thread. Then calls combine(seg, partial) on the calling thread for every chunk in order:
// segment by segment, chunk by chunk. partial must not throw (it runs in a parallel region).
template <class SegLen, class Partial, class Combine>
void chunked_reduce(int64_t nseg, SegLen seg_len, int64_t min_parallel, Partial partial,
                    Combine combine) {
  int64_t total = 0, nchunks = 0;
  for (int64_t i = 0; i < nseg; ++i) {
    total += seg_len(i);
    nchunks += (seg_len(i) + kReduceChunk - 1) / kReduceChunk;
  }
  const bool parallel = nchunks >= 4 && total >= min_parallel && num_threads() > 1;
  struct Chunk {
    int64_t seg, begin, len;
  };
  Chunk chunk[kReduceBlock];
  double part[kReduceBlock];
  int64_t seg = 0, begin = 0;
  for (;;) {
    int64_t count = 0;
    while (seg < nseg && count < kReduceBlock) {
      const int64_t left = seg_len(seg) - begin;
      if (left <= 0) {
        ++seg;
        begin = 0;
        continue;
      }
      const int64_t len = left < kReduceChunk ? left : kReduceChunk;
      chunk[count++] = {seg, begin, len};
      begin += len;
    }
    if (count == 0) return;
    auto compute = [&](int64_t c) {
      part[c] = partial(chunk[c].seg, chunk[c].begin, chunk[c].len);
    };
    if (parallel && count > 1) {
#pragma omp parallel for schedule(static) num_threads(num_threads())
      for (int64_t c = 0; c < count; ++c) compute(c);
    } else {  // no team of one: small calls (a layer's norm, a short loss) stay cheap
      for (int64_t c = 0; c < count; ++c) compute(c);
    }
    for (int64_t c = 0; c < count; ++c) combine(chunk[c].seg, part[c]);
  }
}

// The sum of partial(begin, len) over the chunks of one range of n elements, left to right.
template <class Partial>
double chunked_sum(int64_t n, Partial partial) {
  double s = 0.0;
  chunked_reduce(
      1, [n](int64_t) { return n; }, 0,
      [&partial](int64_t, int64_t b, int64_t len) { return partial(b, len); },
      [&s](int64_t, double p) { s += p; });
  return s;
}

}  // namespace sg
