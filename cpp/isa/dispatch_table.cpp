// The list of every family's DispatchTable and the re-pointing that follows a change of ISA.
#include "isa/dispatch_table.h"

namespace sg {
namespace {
// Constant-initialised (null) before any table's constructor runs; the tables register while
// the module loads, single-threaded, and are only walked after that.
DispatchSlot* g_slots = nullptr;
}  // namespace

DispatchSlot::DispatchSlot(const void* generic, const void* avx2, const void* avx512)
    : entries_{generic, avx2, avx512}, active_{nullptr}, next_{g_slots} {
  g_slots = this;
  active_.store(resolve(active_isa()), std::memory_order_relaxed);
}

const void* DispatchSlot::resolve(Isa isa) const {
  for (int i = static_cast<int>(isa); i > 0; --i) {
    if (entries_[i]) return entries_[i];
  }
  return entries_[0];
}

void select_dispatch_tables(Isa isa) {
  for (DispatchSlot* s = g_slots; s; s = s->next_) {
    s->active_.store(s->resolve(isa), std::memory_order_relaxed);
  }
}

}  // namespace sg
