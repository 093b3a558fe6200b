// The active instruction-set path. Each kernel family keeps its own table of function
// pointers, one entry per Isa, and indexes it with active_isa() on each call.
#pragma once

#include <string>

namespace sg {

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };
constexpr int kNumIsa = 3;

const char* isa_name(Isa isa);
bool isa_supported(Isa isa);
Isa best_isa();

// Chosen at import: best_isa(), lowered by STEADYGRAD_ISA. Changeable (tests run every path).
Isa active_isa();

// Parse "generic" | "avx2" | "avx512". Returns false and fills `error` on an unknown name or a
// path this CPU/OS cannot run; the active path is then unchanged.
bool set_active_isa(const std::string& name, std::string* error);

// Reads STEADYGRAD_ISA (if set) and applies it; returns false and fills `error` if invalid.
bool init_isa_from_env(std::string* error);

// Families declare their per-ISA tables like this: `const T* table[kNumIsa]`, where an entry
// is null when the ISA file was not compiled (non-x86 builds); pick() falls back downwards.
template <class T>
const T& pick(const T* const (&table)[kNumIsa]) {
  for (int i = static_cast<int>(active_isa()); i > 0; --i) {
    if (table[i]) return *table[i];
  }
  return *table[0];
}

}  // namespace sg
