// Gradients that are final before backward() ends.
#pragma once
#include <functional>

#include "autograd/tensor.h"

namespace mtalab {

// While one is alive on this thread, backward() calls it with each leaf whose gradient is
// final for that sweep: every node with an edge into the leaf has run (whether or not a
// gradient flowed). Lets communication start on the last layers' gradients while backward
// still runs through the first ones (experiments/dist/bucketed_sum.h). Leaves the sweep
// never reaches are not reported. Costs one count per leaf edge, and nothing without a hook.
class GradReadyHook {
 public:
  using Fn = std::function<void(const TensorImpl*)>;
  explicit GradReadyHook(Fn fn);
  ~GradReadyHook();
  GradReadyHook(const GradReadyHook&) = delete;
  GradReadyHook& operator=(const GradReadyHook&) = delete;
  static const Fn* current();  // the innermost hook of this thread, or null

 private:
  Fn fn_;
  const Fn* prev_;
};

}  // namespace mtalab
