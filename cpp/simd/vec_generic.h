// V: the portable 4-lane float vector (GCC/Clang vector extensions: SSE2 on x86-64, NEON on
// arm64). The generic path and the reference the ISA paths are tested against. No FMA
// instruction is assumed: fma() is a multiply then an add.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace sg {
namespace {

constexpr const char* kIsaName = "generic";

typedef float f32x4 __attribute__((vector_size(16)));
typedef int32_t i32x4 __attribute__((vector_size(16)));

struct V {
  using R = f32x4;
  using M = i32x4;
  static constexpr int W = 4;

  static inline R zero() { return R{0.f, 0.f, 0.f, 0.f}; }
  static inline R set1(float x) { return R{x, x, x, x}; }
  static inline R load(const float* p) { R r; std::memcpy(&r, p, sizeof r); return r; }
  static inline void store(float* p, R x) { std::memcpy(p, &x, sizeof x); }
  static inline R load_n(const float* p, int64_t n) {
    R r = zero();
    for (int64_t i = 0; i < n; ++i) r[i] = p[i];
    return r;
  }
  static inline void store_n(float* p, R x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) p[i] = x[i];
  }

  static inline R add(R a, R b) { return a + b; }
  static inline R sub(R a, R b) { return a - b; }
  static inline R mul(R a, R b) { return a * b; }
  static inline R div(R a, R b) { return a / b; }
  static inline R fma(R a, R b, R c) { return a * b + c; }
  static inline R fnma(R a, R b, R c) { return c - a * b; }
  // max/min follow x86 semantics (second operand when unordered) so all paths agree on NaN.
  static inline R max(R a, R b) { return a > b ? a : b; }
  static inline R min(R a, R b) { return a < b ? a : b; }
  static inline R sqrt(R a) { return R{std::sqrt(a[0]), std::sqrt(a[1]), std::sqrt(a[2]), std::sqrt(a[3])}; }
  static inline R abs(R a) {
    i32x4 bits;
    std::memcpy(&bits, &a, sizeof a);
    bits &= 0x7fffffff;
    std::memcpy(&a, &bits, sizeof a);
    return a;
  }
  static inline R neg(R a) { return -a; }
  static inline R round(R a) {
    return R{std::nearbyint(a[0]), std::nearbyint(a[1]), std::nearbyint(a[2]), std::nearbyint(a[3])};
  }
  static inline R pow2(R n) {
    i32x4 i = __builtin_convertvector(n, i32x4);
    i = (i + 127) << 23;
    R r;
    std::memcpy(&r, &i, sizeof r);
    return r;
  }

  static inline M gt(R a, R b) { return a > b; }
  static inline M ge(R a, R b) { return a >= b; }
  static inline M lt(R a, R b) { return a < b; }
  static inline M le(R a, R b) { return a <= b; }
  static inline M unord(R a, R b) { return (a != a) | (b != b); }
  static inline M eq(R a, R b) { return a == b; }
  static inline M mask_or(M a, M b) { return a | b; }
  static inline bool any(M m) { return (m[0] | m[1] | m[2] | m[3]) != 0; }
  static inline R select(M m, R a, R b) { return m ? a : b; }
  static inline R and_mask(M m, R a) { return m ? a : zero(); }

  // int32 lanes <-> float lanes (pooling's argmax indices): exact for |value| < 2^24.
  static inline R load_i32(const int32_t* p) {
    i32x4 i;
    std::memcpy(&i, p, sizeof i);
    return __builtin_convertvector(i, R);
  }
  static inline R load_i32_n(const int32_t* p, int64_t n) {
    i32x4 i = {0, 0, 0, 0};
    for (int64_t j = 0; j < n; ++j) i[j] = p[j];
    return __builtin_convertvector(i, R);
  }
  static inline void store_i32(int32_t* p, R x) {
    i32x4 i = __builtin_convertvector(x, i32x4);
    std::memcpy(p, &i, sizeof i);
  }
  static inline void store_i32_n(int32_t* p, R x, int64_t n) {
    i32x4 i = __builtin_convertvector(x, i32x4);
    for (int64_t j = 0; j < n; ++j) p[j] = i[j];
  }

  static inline float reduce_add(R a) { return (a[0] + a[2]) + (a[1] + a[3]); }
  static inline float reduce_max(R a) {
    float x = a[0] > a[2] ? a[0] : a[2], y = a[1] > a[3] ? a[1] : a[3];
    return x > y ? x : y;
  }
};

typedef double f64x2 __attribute__((vector_size(16)));

struct VD {
  using R = f64x2;
  static constexpr int W = 2;
  static inline R zero() { return R{0.0, 0.0}; }
  static inline R cvt_lo(f32x4 x) { return R{x[0], x[1]}; }
  static inline R cvt_hi(f32x4 x) { return R{x[2], x[3]}; }
  static inline R fma(R a, R b, R c) { return a * b + c; }  // a*b is exact for float inputs
  static inline void store(double* p, R x) { std::memcpy(p, &x, sizeof x); }
};

}  // namespace
}  // namespace sg
