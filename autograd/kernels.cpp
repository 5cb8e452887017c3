// The kernel tables, one definition each; the backends fill them (see kernels.h).
#include "autograd/kernels.h"

namespace mtalab {

KernelTable<CopyFn> copy_kernel("copy");
KernelTable<FillFn> fill_kernel("fill");
KernelTable<UnaryFn> unary_kernel("unary");
KernelTable<BinaryFn> binary_kernel("binary");
KernelTable<WhereFn> where_kernel("where");
KernelTable<ReduceFn> reduce_kernel("reduce");
KernelTable<MatmulFn> matmul_kernel("matmul");
KernelTable<SoftmaxFn> softmax_kernel("softmax");
KernelTable<SoftmaxBwdFn> softmax_bwd_kernel("softmax_backward");
KernelTable<NormFn> norm_kernel("norm");
KernelTable<NormBwdFn> norm_bwd_kernel("norm_backward");
KernelTable<EmbeddingFn> embedding_kernel("embedding");
KernelTable<EmbeddingBwdFn> embedding_bwd_kernel("embedding_backward");
KernelTable<CrossEntropyFn> cross_entropy_kernel("cross_entropy");
KernelTable<CrossEntropyBwdFn> cross_entropy_bwd_kernel("cross_entropy_backward");
KernelTable<RandomFn> random_kernel("random");
KernelTable<AdamWFn> adamw_kernel("adamw");
KernelTable<KqConvFn> kq_conv_kernel("kq_conv");
KernelTable<KqConvBwdFn> kq_conv_bwd_kernel("kq_conv_backward");
KernelTable<HeadMixFn> head_mix_kernel("head_mix");
KernelTable<HeadMixBwdFn> head_mix_bwd_kernel("head_mix_backward");
KernelTable<AttentionFn> attention_kernel("attention");
KernelTable<AttentionBwdFn> attention_bwd_kernel("attention_backward");

namespace {
template <typename Fn>
KernelSupport support(const KernelTable<Fn>& t) {
  return {t.name, t.has(DeviceKind::cpu), t.has(DeviceKind::cuda)};
}
}  // namespace

std::vector<KernelSupport> kernel_support() {
  return {support(copy_kernel),          support(fill_kernel),         support(unary_kernel),
          support(binary_kernel),        support(where_kernel),        support(reduce_kernel),
          support(matmul_kernel),        support(softmax_kernel),      support(softmax_bwd_kernel),
          support(norm_kernel),          support(norm_bwd_kernel),     support(embedding_kernel),
          support(embedding_bwd_kernel), support(cross_entropy_kernel), support(cross_entropy_bwd_kernel),
          support(random_kernel),        support(adamw_kernel),        support(kq_conv_kernel),
          support(kq_conv_bwd_kernel),   support(head_mix_kernel),     support(head_mix_bwd_kernel),
          support(attention_kernel),     support(attention_bwd_kernel)};
}

}  // namespace mtalab
