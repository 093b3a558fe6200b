// CPUID + XGETBV probing. A CPU bit alone is not enough: the OS must also save the wider
// registers (XCR0), or the first AVX-512 instruction faults (ggml's "no OS check" bug).
#include "isa/cpu_features.h"

#include <cstring>

#if defined(SG_X86)
#include <cpuid.h>
#include <cstdint>
#endif

namespace sg {
namespace {

#if defined(SG_X86)
uint64_t read_xcr0() {
  uint32_t eax, edx;
  // xgetbv with ecx=0; encoded as bytes so no -mxsave flag is needed in this baseline TU.
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  const bool avx = c & (1u << 28);
  const bool fma = c & (1u << 12);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool ymm_ok = (xcr0 & 0x6) == 0x6;
  const bool zmm_ok = (xcr0 & 0xE6) == 0xE6;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5);
  const bool avx512f = b & (1u << 16);
  const bool avx512dq = b & (1u << 17);
  const bool avx512bw = b & (1u << 30);
  const bool avx512vl = b & (1u << 31);
  f.avx2_fma = ymm_ok && avx2 && fma;
  f.avx512 = f.avx2_fma && zmm_ok && avx512f && avx512dq && avx512bw && avx512vl;
  const bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24);
  const bool tile_ok = (xcr0 & 0x60000) == 0x60000;
  f.amx_bf16 = f.avx512 && amx_bf16 && amx_tile && tile_ok;
  if (a >= 1) {  // leaf 7's highest subleaf
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512_bf16 = f.avx512 && (a & (1u << 5));
  }
  return f;
}

void read_model(char* out) {
  unsigned regs[12];
  unsigned max_ext = __get_cpuid_max(0x80000000, nullptr);
  if (max_ext < 0x80000004) return;
  for (unsigned i = 0; i < 3; ++i) {
    __get_cpuid(0x80000002 + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
  }
  std::memcpy(out, regs, 48);
  out[48] = '\0';
}
#else
CpuFeatures detect() { return {}; }
void read_model(char*) {}
#endif

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

const char* cpu_model_name() {
  static char name[49] = {0};
  static bool done = false;
  if (!done) {
    read_model(name);
    // Trim the padding some vendors put around the name.
    char* s = name;
    while (*s == ' ') ++s;
    if (s != name) std::memmove(name, s, std::strlen(s) + 1);
    for (int i = static_cast<int>(std::strlen(name)) - 1; i >= 0 && name[i] == ' '; --i) name[i] = 0;
    done = true;
  }
  return name;
}

}  // namespace sg
