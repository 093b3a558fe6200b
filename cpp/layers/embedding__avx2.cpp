// Embedding kernels compiled for the avx2 path.
#include "simd/vec_avx2.h"
#include "layers/embedding_impl.h"

namespace sg {
const EmbeddingKernels embedding_kernels__avx2 = {&emb_gather<int32_t>, &emb_gather<int64_t>,
                                                  &emb_scatter};
}
