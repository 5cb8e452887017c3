// Module: a named tree of learnable tensors. Parameter names are dotted paths
// (`layers.0.attention.wq.weight`) in registration order: they are the keys of
// checkpoints, run logs and error messages.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/tensor.h"

namespace mtalab {

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter below this module, with its full dotted name.
  std::vector<std::pair<std::string, Tensor>> named_parameters(const std::string& prefix = "") const;
  std::vector<Tensor> parameters() const;
  int64_t num_parameters() const;
  void zero_grad();
  void train(bool on = true);
  // Moves every parameter (and a subclass's buffers) to `d` in place: each parameter keeps
  // its identity, so the modules' own handles, optimizer lists and names stay valid.
  // Gradients are dropped. Build on the CPU, then move: initial values do not depend on
  // the device.
  virtual void to(Device d);
  Device device() const;  // where the parameters live (cpu for a module without any)
  bool training() const { return training_; }

 protected:
  // Registers a leaf tensor (marked requires_grad) and returns it.
  Tensor register_parameter(const std::string& name, Tensor t);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }

 private:
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace mtalab
