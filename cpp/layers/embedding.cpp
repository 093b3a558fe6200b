// Embedding drivers (see embedding.h): the index check, the parallel gather, and the backward's
// sort of the indices by row and its parallel split of the table's rows.
//
// The backward's write (accumulate=false: the first backward after zero_grad) must leave dw
// equal to this batch's gradient: its rows for this batch's indices, zero everywhere else.
// Untouched rows are cleared by a pass that reads each one and writes only a row that is not
// already zero, rather than by remembering which rows an earlier backward wrote and zeroing
// just those: that bookkeeping is only right while nothing else writes the buffer, and much
// does (a tied weight's other layer, `p.grad = g`, in-place edits of p.grad, clipping by a
// non-finite norm, an allreduce, a checkpoint); a pass that reads never assumes anything. On
// the table of a language model (50k x 256, 8k indices a batch) that pass reads the untouched
// rows once (~43 MB) and writes zeros only over the rows the previous step left non-zero
// (~7 MB); each indexed row is written once (~8 MB). A dense zero-fill plus scatter (torch's
// backward) writes all 51 MB and then adds 8 MB into it. Reading zero rows also never makes a
// page resident that nothing ever wrote (a fresh gradient buffer is calloc'ed). Each row is
// written once, by one thread, as the sum of its contributions in position order: the result
// does not depend on how the rows are split between threads.
#include "layers/embedding.h"

#include <omp.h>

#include <algorithm>
#include <utility>

#include "common/parallel.h"

namespace sg {
namespace {

// Stable LSD radix sort of keys[0, m) by row (11-bit digits: two passes for a 50k-row table);
// the positions were ascending, so they stay ascending within a row. Returns where the sorted
// keys lie (keys or tmp).
uint64_t* sort_by_row(uint64_t* keys, uint64_t* tmp, int64_t m, int64_t num) {
  constexpr int kBits = 11;
  constexpr int64_t kBuckets = int64_t{1} << kBits;
  int row_bits = 0;
  while (row_bits < 32 && (int64_t{1} << row_bits) < num) ++row_bits;
  uint64_t* src = keys;
  uint64_t* dst = tmp;
  for (int shift = 0; shift < row_bits && m > 1; shift += kBits) {
    const int s = 32 + shift;  // the row's bits of a key (emb_key)
    int64_t count[kBuckets] = {};
    for (int64_t k = 0; k < m; ++k) ++count[(src[k] >> s) & (kBuckets - 1)];
    if (count[(src[0] >> s) & (kBuckets - 1)] == m) continue;  // one digit value: already in order
    int64_t sum = 0;
    for (int64_t b = 0; b < kBuckets; ++b) sum += std::exchange(count[b], sum);
    for (int64_t k = 0; k < m; ++k) dst[count[(src[k] >> s) & (kBuckets - 1)]++] = src[k];
    std::swap(src, dst);
  }
  return src;
}

// The first k with row(keys[k]) >= r.
int64_t first_of_row(const uint64_t* keys, int64_t m, int64_t r) {
  return std::lower_bound(keys, keys + m, emb_key(r, 0)) - keys;
}

// Thread t's first row when rows are split by their cost (one pass over the row, plus one per
// contribution): the smallest r with r + first_of_row(r) >= t/T of the total.
int64_t split_row(const uint64_t* keys, int64_t m, int64_t num, int64_t t, int64_t T) {
  const int64_t target = (num + m) * t / T;
  int64_t lo = 0, hi = num;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (mid + first_of_row(keys, m, mid) >= target) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

// Thread t's first key when only the indexed rows are visited: the start of the row that holds
// key t*m/T.
int64_t split_key(const uint64_t* keys, int64_t m, int64_t t, int64_t T) {
  const int64_t k = m * t / T;
  return k >= m ? m : first_of_row(keys, m, emb_key_row(keys[k]));
}

}  // namespace

template <class Index>
int64_t embedding_find_bad(const Index* idx, int64_t n, int64_t num) {
  constexpr int64_t kBlock = 4096;  // a branch-free scan per block; the exact position after
  const auto limit = static_cast<uint64_t>(num);
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = std::min(b + kBlock, n);
    int bad = 0;
    for (int64_t i = b; i < e; ++i) bad |= static_cast<uint64_t>(idx[i]) >= limit;  // < 0 wraps
    if (!bad) continue;
    for (int64_t i = b; i < e; ++i) {
      if (static_cast<uint64_t>(idx[i]) >= limit) return i;
    }
  }
  return -1;
}

template <class Index>
void embedding_forward_f32(float* out, const float* w, const Index* idx, int64_t n, int64_t dim) {
  if (n <= 0 || dim <= 0) return;
  const EmbeddingKernels& k = embedding_kernels();
  auto gather = [&](float* o, const Index* ix, int64_t rows) {
    if constexpr (sizeof(Index) == 4) k.gather_i32(o, w, ix, rows, dim);
    else k.gather_i64(o, w, ix, rows, dim);
  };
  // chunks of whole rows, about 16k floats each (elements, so that one index row of a wide
  // table already counts as the work it is)
  const int64_t rows = std::max<int64_t>(1, (int64_t{1} << 14) / dim);
  parallel_chunks(n * dim, rows * dim, [&](int64_t lo, int64_t hi) {
    gather(out + lo, idx + lo / dim, (hi - lo) / dim);
  });
}

template <class Index>
void embedding_backward_f32(float* dw, const float* dy, const Index* idx, int64_t n, int64_t num,
                            int64_t dim, int64_t padding_idx, bool accumulate, uint64_t* scratch) {
  if (num <= 0 || dim <= 0) return;
  int64_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto r = static_cast<int64_t>(idx[i]);
    if (r != padding_idx) scratch[m++] = emb_key(r, i);
  }
  const uint64_t* keys = sort_by_row(scratch, scratch + n, m, num);
  const EmbeddingKernels& kern = embedding_kernels();
  const int64_t work = ((accumulate ? 0 : num) + m) * dim;
  const int threads = num_threads();
  if (work < kElementwiseParallelMin || threads < 2) {
    kern.scatter(dw, dy, keys, 0, m, 0, num, dim, accumulate);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    int64_t k0, k1, r0 = 0, r1 = 0;
    if (accumulate) {
      k0 = split_key(keys, m, t, T);
      k1 = split_key(keys, m, t + 1, T);
    } else {
      r0 = split_row(keys, m, num, t, T);
      r1 = split_row(keys, m, num, t + 1, T);
      k0 = first_of_row(keys, m, r0);
      k1 = first_of_row(keys, m, r1);
    }
    kern.scatter(dw, dy, keys, k0, k1, r0, r1, dim, accumulate);
  }
}

template int64_t embedding_find_bad<int32_t>(const int32_t*, int64_t, int64_t);
template int64_t embedding_find_bad<int64_t>(const int64_t*, int64_t, int64_t);
template void embedding_forward_f32<int32_t>(float*, const float*, const int32_t*, int64_t,
                                             int64_t);
template void embedding_forward_f32<int64_t>(float*, const float*, const int64_t*, int64_t,
                                             int64_t);
template void embedding_backward_f32<int32_t>(float*, const float*, const int32_t*, int64_t,
                                              int64_t, int64_t, int64_t, bool, uint64_t*);
template void embedding_backward_f32<int64_t>(float*, const float*, const int64_t*, int64_t,
                                              int64_t, int64_t, int64_t, bool, uint64_t*);

}  // namespace sg
