// The kernel tables, one definition each; the backends fill them (see kernels.h).
#include "autograd/kernels.h"

namespace mtalab {

#define MTALAB_DEFINE_KERNEL_FAMILY(STEM, FN, NAME) KernelTable<FN> STEM##_kernel(NAME);
MTALAB_KERNEL_FAMILIES(MTALAB_DEFINE_KERNEL_FAMILY)
#undef MTALAB_DEFINE_KERNEL_FAMILY

namespace {
template <typename Fn>
KernelSupport support(const KernelTable<Fn>& t) {
  return {t.name, t.has(DeviceKind::cpu), t.has(DeviceKind::cuda)};
}
}  // namespace

std::vector<KernelSupport> kernel_support() {
#define MTALAB_SUPPORT_OF(STEM, FN, NAME) support(STEM##_kernel),
  return {MTALAB_KERNEL_FAMILIES(MTALAB_SUPPORT_OF)};
#undef MTALAB_SUPPORT_OF
}

}  // namespace mtalab
