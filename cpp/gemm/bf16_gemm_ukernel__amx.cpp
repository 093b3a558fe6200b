// AMX-BF16 GEMM microkernel (tdpbf16ps): the AVX-512 table's 14 x 32 tile as two 14 x 16 fp32
// C tiles, k 32 steps (one 64-byte tile row of bf16) at a time: per k chunk one A tile (14 rows
// x 32 k) and two B tiles (16 k pairs x 16 columns, the pair layout of bf16.h), two tdpbf16ps.
// Panels: A chunk t is 14 rows of 16 words (row r's k steps 32t .. 32t + 31), B is the pair
// layout with k padded to whole chunks (zeros), read as two tiles of row stride 128 bytes.
// The tile configuration is loaded at each call (tile state is per thread and another library
// in the process may have loaded its own); the process asked Linux for the tile data first
// (matmul_precision.cpp). Written against the documented instruction semantics; called only
// where CPUID, XCR0 and the OS say AMX-BF16.
#include "gemm/bf16_ukernel_impl.h"

namespace sg {
namespace {

constexpr int kChunk = 32;  // k steps per tile row (64 bytes of bf16)

int64_t chunk_depth(int64_t kc) { return (kc + kChunk - 1) / kChunk * (kChunk / 2); }

// A: the packer's k-major panel (src[p * MR + r]) to row-major k chunks of bf16 pairs.
void convert_a(const float* src, int64_t kc, float* dst) {
  uint32_t* d = reinterpret_cast<uint32_t*>(dst);
  const int64_t chunks = (kc + kChunk - 1) / kChunk;
  for (int64_t t = 0; t < chunks; ++t) {
    for (int r = 0; r < kMR; ++r) {
      for (int qq = 0; qq < kChunk / 2; ++qq) {
        const int64_t p = t * kChunk + 2 * qq;
        const uint32_t lo = p < kc ? bf16_bits(src[p * kMR + r]) : 0u;
        const uint32_t hi = p + 1 < kc ? bf16_bits(src[(p + 1) * kMR + r]) : 0u;
        d[(t * kMR + r) * (kChunk / 2) + qq] = lo | hi << 16;
      }
    }
  }
}

// The palette-1 tile configuration: tiles 0, 1 are C (14 rows x 64 bytes), 2 is A (14 x 64),
// 3 and 4 are B (16 x 64). Layout: palette id, start row, 14 reserved bytes, 16 colsb words,
// 16 row counts.
struct alignas(64) TileConfig {
  uint8_t palette_id = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {64, 64, 64, 64, 64};
  uint8_t rows[16] = {kMR, kMR, kMR, 16, 16};
};
static_assert(sizeof(TileConfig) == 64, "the tile configuration is 64 bytes");
const TileConfig kTiles;

void bf16_ukernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t mr,
                  int64_t nr, const GemmEpilogue& ep) {
  _tile_loadconfig(&kTiles);
  f32_gemm_prefetch_c<kMR, kNR>(c, ldc, mr);
  _tile_zero(0);
  _tile_zero(1);
  const int64_t chunks = (kc + kChunk - 1) / kChunk;
  constexpr int64_t kAChunk = kMR * kChunk / 2, kBChunk = kNR * kChunk / 2;  // floats
  for (int64_t t = 0; t < chunks; ++t) {
    _tile_loadd(2, a + t * kAChunk, 64);
    _tile_loadd(3, b + t * kBChunk, kNR * 4);
    _tile_loadd(4, b + t * kBChunk + 16, kNR * 4);
    _tile_dpbf16ps(0, 2, 3);
    _tile_dpbf16ps(1, 2, 4);
  }
  alignas(64) float out[kMR * kNR];
  _tile_stored(0, out, kNR * 4);
  _tile_stored(1, out + 16, kNR * 4);
  V::R acc[kMR][kNRV];
#pragma GCC unroll 14
  for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < kNRV; ++v) acc[r][v] = V::load(out + r * kNR + v * 16);
  f32_gemm_epilogue<kMR, kNRV>(acc, c, ldc, mr, nr, ep);
}

}  // namespace

SG_BF16_UKERNEL(bf16_gemm_ukernel__amx, chunk_depth);

}  // namespace sg
