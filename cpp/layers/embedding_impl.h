// Embedding kernels over V: the row gather and the backward's scatter (gradient rows summed,
// the rows between them cleared where not zero). Included once per ISA TU. Columns are
// independent lanes (no reduction across them), so every ISA path gives the same bits.
#pragma once
#include <cstdint>

#include "layers/embedding.h"

namespace sg {
namespace {

// How many rows ahead the gather prefetches: a table row is a random address, which the
// hardware prefetcher cannot guess (it follows each row once its first lines are read).
constexpr int64_t kEmbPrefetchRows = 4;

// How many sort keys ahead the scatter prefetches the gradient row each one reads (dy rows are
// visited in row order, which is a random order of positions).
constexpr int64_t kEmbPrefetchKeys = 4;

inline void emb_prefetch_row(const float* p, int64_t dim) {
  if (dim <= 0) return;
  for (int64_t j = 0; j < dim; j += 16) __builtin_prefetch(p + j);  // one 64-byte line each
  __builtin_prefetch(p + dim - 1);  // a row that does not start a line spans one more
}

inline void emb_copy_row(float* dst, const float* src, int64_t dim) {
  int64_t j = 0;
  for (; j + 4 * V::W <= dim; j += 4 * V::W) {
    const V::R a = V::load(src + j), b = V::load(src + j + V::W);
    const V::R c = V::load(src + j + 2 * V::W), d = V::load(src + j + 3 * V::W);
    V::store(dst + j, a);
    V::store(dst + j + V::W, b);
    V::store(dst + j + 2 * V::W, c);
    V::store(dst + j + 3 * V::W, d);
  }
  for (; j + V::W <= dim; j += V::W) V::store(dst + j, V::load(src + j));
  if (j < dim) V::store_n(dst + j, V::load_n(src + j, dim - j), dim - j);
}

template <class Index>
void emb_gather(float* out, const float* w, const Index* idx, int64_t n, int64_t dim) {
  for (int64_t i = 0; i < n; ++i) {
    if (i + kEmbPrefetchRows < n) {
      emb_prefetch_row(w + static_cast<int64_t>(idx[i + kEmbPrefetchRows]) * dim, dim);
    }
    emb_copy_row(out + i * dim, w + static_cast<int64_t>(idx[i]) * dim, dim);
  }
}

// One keyed row of the scatter (embedding.h): dwr = (accumulate ? dwr : 0) + the sum of its
// count keys' dy rows, left to right.
void emb_row_sum(float* dwr, const float* dy, const uint64_t* keys, int64_t count, int64_t dim,
                 bool accumulate) {
  auto row = [&](int64_t k) { return dy + emb_key_pos(keys[k]) * dim; };
  int64_t j = 0;
  // 4 vectors of columns at a time, each summed over the contributions in order; the old
  // gradient is added last (old + s: torch's accumulation of a freshly computed gradient)
  for (; j + 4 * V::W <= dim; j += 4 * V::W) {
    const float* r = row(0) + j;
    V::R a = V::load(r), b = V::load(r + V::W), c = V::load(r + 2 * V::W), d = V::load(r + 3 * V::W);
    for (int64_t k = 1; k < count; ++k) {
      r = row(k) + j;
      a = V::add(a, V::load(r));
      b = V::add(b, V::load(r + V::W));
      c = V::add(c, V::load(r + 2 * V::W));
      d = V::add(d, V::load(r + 3 * V::W));
    }
    float* o = dwr + j;
    if (accumulate) {
      a = V::add(V::load(o), a);
      b = V::add(V::load(o + V::W), b);
      c = V::add(V::load(o + 2 * V::W), c);
      d = V::add(V::load(o + 3 * V::W), d);
    }
    V::store(o, a);
    V::store(o + V::W, b);
    V::store(o + 2 * V::W, c);
    V::store(o + 3 * V::W, d);
  }
  for (; j < dim; j += V::W) {  // the same sums a vector (or the partial tail) at a time
    const int64_t cnt = dim - j < V::W ? dim - j : V::W;
    V::R a = V::load_n(row(0) + j, cnt);
    for (int64_t k = 1; k < count; ++k) a = V::add(a, V::load_n(row(k) + j, cnt));
    if (accumulate) a = V::add(V::load_n(dwr + j, cnt), a);
    V::store_n(dwr + j, a, cnt);
  }
}

// A float's bits, read through a type that may alias it.
typedef uint32_t __attribute__((__may_alias__)) emb_bits;

// Each of `rows` rows that is not all +-0.0 set to +0.0 (a zero row is only read).
void emb_clear_rows(float* w, int64_t rows, int64_t dim) {
  for (int64_t r = 0; r < rows; ++r) {
    float* p = w + r * dim;
    const emb_bits* bits = reinterpret_cast<const emb_bits*>(p);
    uint32_t any = 0;
    for (int64_t j = 0; j < dim; ++j) any |= bits[j];  // vectorised with the TU's ISA flags
    if (!any) continue;
    int64_t j = 0;
    for (; j + V::W <= dim; j += V::W) V::store(p + j, V::zero());
    if (j < dim) V::store_n(p + j, V::zero(), dim - j);
  }
}

void emb_scatter(float* dw, const float* dy, const uint64_t* keys, int64_t k0, int64_t k1,
                 int64_t r0, int64_t r1, int64_t dim, bool accumulate) {
  int64_t r = r0, ahead = k0;
  for (int64_t k = k0; k < k1;) {
    const int64_t row = emb_key_row(keys[k]);
    int64_t e = k + 1;
    while (e < k1 && emb_key_row(keys[e]) == row) ++e;
    // the rows the next keys read (and, accumulating, the gradient rows they add to: writing,
    // the clearing pass walks every row in order, which the hardware prefetcher follows)
    for (ahead = ahead > e ? ahead : e; ahead < k1 && ahead < e + kEmbPrefetchKeys; ++ahead) {
      emb_prefetch_row(dy + emb_key_pos(keys[ahead]) * dim, dim);
      if (accumulate) emb_prefetch_row(dw + emb_key_row(keys[ahead]) * dim, dim);
    }
    if (!accumulate) emb_clear_rows(dw + r * dim, row - r, dim);
    emb_row_sum(dw + row * dim, dy, keys + k, e - k, dim, accumulate);
    r = row + 1;
    k = e;
  }
  if (!accumulate) emb_clear_rows(dw + r * dim, r1 - r, dim);
}

}  // namespace
}  // namespace sg
