// The matmul precision flag and the bf16 path: detected once, lowered by STEADYGRAD_BF16_PATH,
// switchable for tests (as the ISA path, isa/dispatch.cpp).
#include "gemm/matmul_precision.h"

#include <atomic>
#include <cstdlib>

#include "isa/cpu_features.h"
#include "isa/dispatch.h"

#if defined(__linux__) && defined(SG_X86)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace sg {

#if defined(SG_X86_AVX512)
extern const Bf16Ukernel bf16_gemm_ukernel__avx512bf16, bf16_gemm_ukernel__amx;
#endif

namespace {

std::atomic<int> g_precision{static_cast<int>(MatmulPrecision::highest)};
std::atomic<int> g_path{0};  // the reference path until the import picks the best

// Linux keeps AMX's 8 KiB tile data out of a process's state until the process asks for it
// (arch_prctl ARCH_REQ_XCOMP_PERM, Linux 5.16+); a tile instruction before that faults. Asked
// once per process; a refusal (older kernel, seccomp) leaves the path unsupported.
bool amx_permitted() {
#if defined(__linux__) && defined(SG_X86) && defined(SYS_arch_prctl)
  static const bool granted = [] {
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return granted;
#else
  return false;
#endif
}

const char* const kPathNames[kNumBf16Path] = {"reference", "avx512bf16", "amx"};

}  // namespace

MatmulPrecision matmul_precision() {
  return static_cast<MatmulPrecision>(g_precision.load(std::memory_order_relaxed));
}

void set_matmul_precision(MatmulPrecision p) {
  g_precision.store(static_cast<int>(p), std::memory_order_relaxed);
}

const char* matmul_precision_name(MatmulPrecision p) {
  return p == MatmulPrecision::bf16 ? "bf16" : "highest";
}

const char* bf16_path_name(Bf16Path p) { return kPathNames[static_cast<int>(p)]; }

bool bf16_path_supported(Bf16Path p) {
  switch (p) {
#if defined(SG_X86_AVX512)
    case Bf16Path::amx: return cpu_features().amx_bf16 && amx_permitted();
    case Bf16Path::avx512bf16: return cpu_features().avx512_bf16;
#else
    case Bf16Path::amx: return false;         // built without the AVX-512 family (SG_AVX512=OFF)
    case Bf16Path::avx512bf16: return false;
#endif
    default: return true;
  }
}

Bf16Path best_bf16_path() {
  for (int i = kNumBf16Path - 1; i > 0; --i) {
    if (bf16_path_supported(static_cast<Bf16Path>(i))) return static_cast<Bf16Path>(i);
  }
  return Bf16Path::reference;
}

Bf16Path active_bf16_path() { return static_cast<Bf16Path>(g_path.load(std::memory_order_relaxed)); }

const Bf16Ukernel* bf16_native_ukernel(const GemmUkernel& uk) {
#if defined(SG_X86_AVX512)
  const Bf16Ukernel* k = nullptr;
  switch (active_bf16_path()) {
    case Bf16Path::amx: k = &bf16_gemm_ukernel__amx; break;
    case Bf16Path::avx512bf16: k = &bf16_gemm_ukernel__avx512bf16; break;
    default: return nullptr;
  }
  return k->mr == uk.mr && k->nr == uk.nr && active_isa() == Isa::avx512 ? k : nullptr;
#else
  (void)uk;
  return nullptr;
#endif
}

Bf16Path effective_bf16_path() {
  return bf16_native_ukernel(gemm_ukernel()) ? active_bf16_path() : Bf16Path::reference;
}

bool set_bf16_path(const std::string& name, std::string* error) {
  int want = -1;
  for (int i = 0; i < kNumBf16Path; ++i) {
    if (name == kPathNames[i]) want = i;
  }
  if (want < 0) {
    *error = "unknown bf16 path '" + name + "': expected one of 'reference', 'avx512bf16', 'amx'";
    return false;
  }
  if (!bf16_path_supported(static_cast<Bf16Path>(want))) {
    *error = "bf16 path '" + name + "' is not supported by this CPU/OS or build (best available: '" +
             bf16_path_name(best_bf16_path()) + "')";
    return false;
  }
  g_path.store(want, std::memory_order_relaxed);
  return true;
}

bool init_bf16_path_from_env(std::string* error) {
  g_path.store(static_cast<int>(best_bf16_path()), std::memory_order_relaxed);
  const char* env = std::getenv("STEADYGRAD_BF16_PATH");
  if (!env || !*env) return true;
  std::string msg;
  if (!set_bf16_path(env, &msg)) {
    *error = "STEADYGRAD_BF16_PATH=" + std::string(env) + ": " + msg;
    return false;
  }
  return true;
}

}  // namespace sg
