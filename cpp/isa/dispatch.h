// The active instruction-set path. Each kernel family's table of function pointers follows it
// through dispatch_table.h, re-pointed when the path is set, not looked up on each call.
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

}  // namespace sg
