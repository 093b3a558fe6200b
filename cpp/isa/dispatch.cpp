// The active ISA path: detected once, optionally lowered by STEADYGRAD_ISA, switchable for tests.
#include "isa/dispatch.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "isa/cpu_features.h"
#include "isa/dispatch_table.h"

namespace sg {
namespace {
std::atomic<int> g_active{-1};

// Every change of path goes through here, so the families' tables always follow it. Callers
// are serialised: at import, and by set_isa, whose binding holds the GIL.
void set_active(Isa isa) {
  g_active.store(static_cast<int>(isa), std::memory_order_relaxed);
  select_dispatch_tables(isa);
}
}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "generic";
  }
}

bool isa_supported(Isa isa) {
  switch (isa) {
#if defined(SG_X86_AVX512)
    case Isa::avx512: return cpu_features().avx512;
#else
    case Isa::avx512: return false;  // built without its kernels (SG_AVX512=OFF)
#endif
    case Isa::avx2: return cpu_features().avx2_fma;
    default: return true;
  }
}

Isa best_isa() {
  if (isa_supported(Isa::avx512)) return Isa::avx512;
  if (isa_supported(Isa::avx2)) return Isa::avx2;
  return Isa::generic;
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_relaxed);
  if (v < 0) {
    v = static_cast<int>(best_isa());
    g_active.store(v, std::memory_order_relaxed);
  }
  return static_cast<Isa>(v);
}

bool set_active_isa(const std::string& name, std::string* error) {
  Isa want;
  if (name == "generic") want = Isa::generic;
  else if (name == "avx2") want = Isa::avx2;
  else if (name == "avx512") want = Isa::avx512;
  else {
    *error = "unknown ISA '" + name + "': expected one of 'generic', 'avx2', 'avx512'";
    return false;
  }
  if (!isa_supported(want)) {
#if !defined(SG_X86_AVX512)
    if (want == Isa::avx512 && cpu_features().avx512) {
      *error = "ISA 'avx512' was left out of this build (SG_AVX512=OFF; best available: '" +
               std::string(isa_name(best_isa())) + "')";
      return false;
    }
#endif
    *error = "ISA '" + name + "' is not supported by this CPU/OS (best available: '" +
             isa_name(best_isa()) + "')";
    return false;
  }
  set_active(want);
  return true;
}

bool init_isa_from_env(std::string* error) {
  const char* env = std::getenv("STEADYGRAD_ISA");
  if (!env || !*env) {
    set_active(best_isa());
    return true;
  }
  std::string msg;
  if (!set_active_isa(env, &msg)) {
    *error = "STEADYGRAD_ISA=" + std::string(env) + ": " + msg;
    return false;
  }
  return true;
}

}  // namespace sg
