// Embedding layer (a lookup table): the forward gathers rows, the backward scatter-adds
// gradient rows. Shape legend: w and dw are (num, dim), the n indices index rows of w, out and
// dy are (n, dim). Indices are checked by the caller (embedding_find_bad) before either call.
#pragma once
#include <cstdint>

#include "isa/dispatch_table.h"

namespace sg {

// The backward's sort key of index position i holding row r: r << 32 | i (both < 2^32).
// Anonymous: each TU (ISA files included) gets its own copy.
namespace {
inline uint64_t emb_key(int64_t row, int64_t pos) {
  return static_cast<uint64_t>(row) << 32 | static_cast<uint64_t>(pos);
}
inline int64_t emb_key_row(uint64_t key) { return static_cast<int64_t>(key >> 32); }
inline int64_t emb_key_pos(uint64_t key) { return static_cast<int64_t>(key & 0xffffffffu); }
}  // namespace

struct EmbeddingKernels {
  // out[i, :] = w[idx[i], :] for i in [0, n).
  void (*gather_i32)(float* out, const float* w, const int32_t* idx, int64_t n, int64_t dim);
  void (*gather_i64)(float* out, const float* w, const int64_t* idx, int64_t n, int64_t dim);
  // Rows [r0, r1) of dw from the keys [k0, k1) sorted by row (and by position within a row),
  // which are exactly the keys of those rows: each keyed row r becomes
  // (accumulate ? dw[r] : 0) + s, s = ((dy[p0] + dy[p1]) + ...) summed left to right over its
  // keys' positions (the order of torch's dense backward, which adds each index's row into a
  // zeroed gradient in index order, then adds that to the old gradient). Writing
  // (accumulate=false), every other row of the range that is not all +-0.0 is set to +0.0 (a
  // zero row is only read); accumulating, they are not touched.
  void (*scatter)(float* dw, const float* dy, const uint64_t* keys, int64_t k0, int64_t k1,
                  int64_t r0, int64_t r1, int64_t dim, bool accumulate);
};

SG_DECLARE_DISPATCH(EmbeddingKernels, embedding_kernels, embedding_kernels);

// The first position i with idx[i] outside [0, num), or -1 when every index is in range.
template <class Index>
int64_t embedding_find_bad(const Index* idx, int64_t n, int64_t num);

// out = w[idx] (n rows of dim floats), parallel over fixed chunks of rows.
template <class Index>
void embedding_forward_f32(float* out, const float* w, const Index* idx, int64_t n, int64_t dim);

// dw[r] (+)= the sum of dy[i] over the positions i with idx[i] == r (in position order), for
// every r but padding_idx (-1: none), which gets no gradient. accumulate=false writes the whole
// of dw without assuming anything about what it held (see embedding.cpp); true adds to it and
// touches only the indexed rows. scratch holds 2n uint64. Bitwise identical for any thread
// count and ISA. Needs n < 2^32 and num < 2^32 (the binding checks).
template <class Index>
void embedding_backward_f32(float* dw, const float* dy, const Index* idx, int64_t n, int64_t num,
                            int64_t dim, int64_t padding_idx, bool accumulate, uint64_t* scratch);

}  // namespace sg
