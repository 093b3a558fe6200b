// FMA peak probe over V: NACC independent accumulator chains, enough to cover the FMA latency
// times the FMA ports (Zen 3/4/5: 4 cycles x 2 ports = 8) with room to spare, few enough to stay in
// registers. Included once per ISA TU.
#pragma once
#include <chrono>
#include <cstdint>
#if defined(__unix__) || defined(__APPLE__)
#include <time.h>
#endif

namespace sg {
namespace {

// Seconds of CPU time of the calling thread where the OS offers it (a probe that shares its
// core with other processes must not count their time slices), else wall time.
inline double probe_clock() {
#if defined(CLOCK_THREAD_CPUTIME_ID)
  timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) return ts.tv_sec + 1e-9 * ts.tv_nsec;
#endif
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <int NACC>
double fma_peak_impl(double seconds) {
  typename V::R acc[NACC];
#pragma GCC unroll 32
  for (int i = 0; i < NACC; ++i) acc[i] = V::set1(1e-3f * static_cast<float>(i));
  // x < 1 and a small y keep every chain bounded and far from denormals.
  const typename V::R x = V::set1(0.999999f), y = V::set1(1e-7f);
  constexpr int64_t kChunk = 1 << 16;
  int64_t iters = 0;
  const double t0 = probe_clock();
  double elapsed = 0.0;
  do {
    for (int64_t it = 0; it < kChunk; ++it) {
#pragma GCC unroll 32
      for (int i = 0; i < NACC; ++i) acc[i] = V::fma(acc[i], x, y);
    }
    iters += kChunk;
    elapsed = probe_clock() - t0;
  } while (elapsed < seconds);
  typename V::R s = acc[0];
#pragma GCC unroll 32
  for (int i = 1; i < NACC; ++i) s = V::add(s, acc[i]);
  // Consume the result so the chains cannot be discarded; it is never NaN.
  if (V::reduce_add(s) != V::reduce_add(s)) return 0.0;
  return static_cast<double>(iters) * NACC * V::W * 2.0 / elapsed * 1e-9;
}

}  // namespace
}  // namespace sg
