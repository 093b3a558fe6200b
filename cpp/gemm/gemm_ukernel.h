// The per-ISA GEMM microkernel table: tile shape, blocking, and four instances of one kernel
// that multiplies an MR x kc sliver of A by a kc x NR sliver of B and applies the epilogue.
#pragma once
#include <cstdint>

#include "isa/dispatch_table.h"

namespace sg {

struct GemmEpilogue {
  float alpha;
  float beta;         // 0: write C without reading it
  const float* bias;  // at this tile's first column, or null
  bool relu;
};

// One MR x NR tile: C(mr, nr) (row stride ldc; mr <= MR, nr <= NR) = epilogue(sum over kc).
// B is always a packed k-major NR-column micropanel. A is either packed (k-major MR-row
// micropanel; rsa/csa ignored) or read in place, element (i, p) at a[i * rsa + p * csa],
// which needs MR valid rows: the driver packs a partial edge sliver instead. Panels are
// zero-padded at the edges, so the kernels only ever load whole tiles.
using GemmUkernelFn = void (*)(int64_t kc, const float* a, int64_t rsa, int64_t csa,
                               const float* b, float* c, int64_t ldc, int64_t mr, int64_t nr,
                               const GemmEpilogue& ep);

// Packing into one micropanel (layouts above), zero-padded at the edges. pack_a: rows
// [i0, i0+rows) (rows <= MR) of op(A) over k range [p0, p0+kc); trans: op(A) = a^T.
// pack_b: columns [j0, j0+cols) (cols <= NR) of op(B) over the same k range;
// pack_b_panels: any cols, into consecutive micropanels.
using GemmPackAFn = void (*)(bool trans, const float* a, int64_t lda, int64_t i0, int64_t rows,
                             int64_t p0, int64_t kc, float* dst);
using GemmPackBFn = void (*)(bool trans, const float* b, int64_t ldb, int64_t p0, int64_t kc,
                             int64_t j0, int64_t cols, float* dst);

// The indirect kernel (the conv family's implicit GEMM, as Dukhan's indirect convolution): A is
// never packed; its k steps are nseg runs, run s reading row r's values contiguously from
// rows[s * MR + r] (len[s] of them: a window tap's channels; a zero buffer for a padding tap or
// a row past mr). B is the packed micropanel of all those k steps in order. Same FMA chain and
// epilogue as fn, so it equals fn on the packed gather of those runs bit for bit.
using GemmIgemmFn = void (*)(int64_t nseg, const float* const* rows, const int64_t* len,
                             const float* b, float* c, int64_t ldc, int64_t mr, int64_t nr,
                             const GemmEpilogue& ep);

struct GemmBlocking {
  int mc, kc, nc;  // mc % mr == 0, nc % nr == 0
};

struct GemmUkernel {
  int mr, nr;                // register tile
  GemmBlocking packed;       // large shapes: A and B packed
  GemmBlocking sup;          // small shapes: A read in place (see gemm.cpp)
  GemmUkernelFn fn[2];       // [A packed]
  GemmPackAFn pack_a;
  GemmPackBFn pack_b;         // one micropanel
  GemmPackBFn pack_b_panels;  // ceil(cols / NR) consecutive micropanels
  GemmIgemmFn igemm;
};

SG_DECLARE_DISPATCH(GemmUkernel, f32_gemm_ukernel, gemm_ukernel);

}  // namespace sg
