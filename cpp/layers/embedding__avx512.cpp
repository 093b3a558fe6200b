// Embedding kernels compiled for the avx512 path.
#include "simd/vec_avx512.h"
#include "layers/embedding_impl.h"

namespace sg {
const EmbeddingKernels embedding_kernels__avx512 = {&emb_gather<int32_t>, &emb_gather<int64_t>,
                                                  &emb_scatter};
}
