// Embedding kernels compiled for the generic path.
// Also defines the family's dispatch table: this file is always built, with baseline flags.
#include "simd/vec_generic.h"
#include "layers/embedding_impl.h"

namespace sg {
const EmbeddingKernels embedding_kernels__generic = {&emb_gather<int32_t>, &emb_gather<int64_t>,
                                                     &emb_scatter};
SG_DEFINE_DISPATCH(EmbeddingKernels, embedding_kernels);
}
