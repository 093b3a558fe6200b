// Elementwise layer kernels over V. Included once per ISA TU.
#pragma once
#include <cstdint>

#include "layers/pointwise.h"

namespace sg {
namespace {

void pw_add(float* y, const float* a, const float* b, int64_t n) {
  int64_t i = 0;
  for (; i + V::W <= n; i += V::W) V::store(y + i, V::add(V::load(a + i), V::load(b + i)));
  if (i < n) V::store_n(y + i, V::add(V::load_n(a + i, n - i), V::load_n(b + i, n - i)), n - i);
}

// murmur3's 32-bit finaliser: full avalanche, integer-only, so every path draws the same bits.
inline uint32_t fmix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}

// Written as a plain loop over 32-bit integers: the compiler vectorises it with the TU's ISA
// flags, and the integer hash is exact on every path.
void pw_dropout(float* y, const float* x, int64_t n, int64_t base, uint64_t seed,
                uint32_t threshold, float scale) {
  const uint32_t k0 = static_cast<uint32_t>(seed);
  const uint32_t k1 = static_cast<uint32_t>(seed >> 32);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t ctr = static_cast<uint64_t>(base + i);
    const uint32_t lo = static_cast<uint32_t>(ctr);
    const uint32_t hi = static_cast<uint32_t>(ctr >> 32);
    const uint32_t h = fmix32(fmix32(lo * 0x9e3779b9u + k0) ^ (k1 + hi * 0x7f4a7c15u));
    y[i] = h >= threshold ? x[i] * scale : 0.0f;
  }
}

}  // namespace
}  // namespace sg
