// The one ISA dispatch mechanism, used by every kernel family and by the FMA probe: a family's
// per-ISA tables and the active one, resolved when the ISA is set (at import, by set_isa), so
// a kernel call is a pointer load, never a re-pick. Knows nothing of any family.
#pragma once
#include <atomic>

#include "isa/dispatch.h"

namespace sg {

// One family's tables, type-erased; every instance joins the list select_dispatch_tables walks.
// Instances are defined only in baseline-compiled files (see SG_DEFINE_DISPATCH): GCC emits a
// header variable's initializer in every file that includes it, and one built with ISA flags
// would run at load on any CPU.
class DispatchSlot {
 public:
  // One table per Isa; null where that ISA's file is not compiled (non-x86 builds).
  DispatchSlot(const void* generic, const void* avx2, const void* avx512);
  DispatchSlot(const DispatchSlot&) = delete;
  DispatchSlot& operator=(const DispatchSlot&) = delete;

 protected:
  const void* active() const { return active_.load(std::memory_order_relaxed); }
  // The table for `isa`, or the nearest lower one that is compiled.
  const void* resolve(Isa isa) const;

 private:
  friend void select_dispatch_tables(Isa isa);
  const void* entries_[kNumIsa];
  std::atomic<const void*> active_;
  DispatchSlot* next_;
};

// Points every family at its table for `isa`. dispatch.cpp calls it whenever the ISA is set.
void select_dispatch_tables(Isa isa);

template <class T>
class DispatchTable : public DispatchSlot {
 public:
  DispatchTable(const T* generic, const T* avx2, const T* avx512)
      : DispatchSlot(generic, avx2, avx512) {}
  const T& active() const { return *static_cast<const T*>(DispatchSlot::active()); }
  const T& for_isa(Isa isa) const { return *static_cast<const T*>(resolve(isa)); }
};

#if defined(SG_X86)
#define SG_X86_TABLE(t) (&(t))
#else
#define SG_X86_TABLE(t) nullptr
#endif
// The AVX-512 tables exist only where their files were built (CMake option SG_AVX512).
#if defined(SG_X86_AVX512)
#define SG_AVX512_TABLE(t) (&(t))
#else
#define SG_AVX512_TABLE(t) nullptr
#endif

// In a family header: declares its tables `tables`__generic/__avx2/__avx512 (each defined in
// the matching *__<isa>.cpp file), its DispatchTable, and the accessors: accessor() is the
// active table, accessor(isa) the one for a given ISA (the FMA probe measures a chosen path).
// The trailing static_assert only makes the macro take a semicolon.
#define SG_DECLARE_DISPATCH(T, tables, accessor)                                 \
  extern const T tables##__generic, tables##__avx2, tables##__avx512;             \
  extern DispatchTable<T> tables##__dispatch;                                     \
  inline const T& accessor() { return tables##__dispatch.active(); }             \
  inline const T& accessor(Isa isa) { return tables##__dispatch.for_isa(isa); }  \
  static_assert(true, "")

// In the family's *__generic.cpp, the one file of a family always compiled, with baseline flags.
#define SG_DEFINE_DISPATCH(T, tables)                                                   \
  DispatchTable<T> tables##__dispatch {                                                 \
    &tables##__generic, SG_X86_TABLE(tables##__avx2), SG_AVX512_TABLE(tables##__avx512) \
  }

}  // namespace sg
