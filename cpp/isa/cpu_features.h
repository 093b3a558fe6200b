// CPU feature detection: what the processor implements AND what the OS saves on context switch.
// Knows nothing of dispatch tables or Python.
#pragma once

namespace sg {

struct CpuFeatures {
  bool avx2_fma = false;  // AVX2 + FMA3, with YMM state enabled by the OS (XCR0 bits 1,2)
  bool avx512 = false;    // AVX-512 F/VL/BW/DQ, with opmask+ZMM state enabled (XCR0 bits 5,6,7)
  bool avx512_bf16 = false;  // avx512 and AVX512_BF16 (CPUID.(EAX=7,ECX=1):EAX[5])
  // avx512 and AMX-BF16 + AMX-TILE (CPUID.(7,0):EDX[22], EDX[24]) with the tile state enabled
  // (XCR0 bits 17 XTILECFG, 18 XTILEDATA). Linux must still grant the process the tile data
  // (gemm/matmul_precision.cpp asks).
  bool amx_bf16 = false;
};

// Detected once, cached.
const CpuFeatures& cpu_features();

// Model name from CPUID leaves 0x80000002..4 ("" where unavailable).
const char* cpu_model_name();

}  // namespace sg
