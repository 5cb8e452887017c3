// The define-by-run tape and the reverse sweep.
#include <unordered_map>
#include <unordered_set>

#include "autograd/function.h"
#include "autograd/grad_ready_hook.h"
#include "autograd/ops.h"

namespace mtalab {

void Context::save(const TensorList& ts) {
  // Detached aliases: an op that saves its own output must not make the output's
  // grad_fn own the output (a reference cycle that would never be freed).
  for (const auto& t : ts) saved.push_back(t.defined() ? t.detach() : Tensor());
}

namespace detail {

bool any_requires_grad(const TensorList& ts) {
  for (const auto& t : ts)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void connect(Node& node, const TensorList& inputs, Context& ctx) {
  node.next.resize(inputs.size());
  node.input_shapes.resize(inputs.size());
  node.input_dtypes.resize(inputs.size());
  ctx.needs_input_grad.assign(inputs.size(), false);
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (!t.defined()) continue;
    node.input_shapes[i] = t.shape();
    node.input_dtypes[i] = t.dtype();
    if (!t.requires_grad()) continue;
    ctx.needs_input_grad[i] = true;
    if (t.grad_fn())
      node.next[i].node = t.grad_fn();
    else
      node.next[i].leaf = t.impl_ptr();
  }
}

void attach(Tensor& out, std::shared_ptr<Node> node) {
  // Never re-parent a tensor someone else holds: give the output its own handle.
  if (out.grad_fn() || out.requires_grad() || out.impl_ptr().use_count() > 1) out = out.detach();
  node->output_shape = out.shape();
  out.impl().grad_fn = std::move(node);
  out.impl().requires_grad = true;
}

}  // namespace detail

namespace {
thread_local const GradReadyHook::Fn* t_grad_ready = nullptr;

void accumulate(Tensor& slot, const Tensor& g) {
  slot = slot.defined() ? add(slot, g) : g;
}
}  // namespace

GradReadyHook::GradReadyHook(Fn fn) : fn_(std::move(fn)), prev_(t_grad_ready) { t_grad_ready = &fn_; }
GradReadyHook::~GradReadyHook() { t_grad_ready = prev_; }
const GradReadyHook::Fn* GradReadyHook::current() { return t_grad_ready; }

void Tensor::backward(const Tensor& grad_in, bool retain_graph) const {
  if (!requires_grad())
    throw std::logic_error("backward: tensor does not require grad (no op on its path needed one)");
  Tensor seed = grad_in;
  if (!seed.defined()) {
    if (numel() != 1)
      throw std::invalid_argument("backward: output of shape " + shape_str(shape()) +
                                  " is not a scalar; pass an explicit gradient");
    seed = ones(shape(), options());
  } else if (seed.shape() != shape()) {
    throw std::invalid_argument("backward: gradient of shape " + shape_str(seed.shape()) +
                                " given for an output of shape " + shape_str(shape()));
  }
  NoGradGuard ng;
  if (is_leaf()) {
    Tensor g = impl().grad ? add(Tensor(impl().grad), seed) : seed.detach();
    impl().grad = g.impl_ptr();
    if (t_grad_ready) (*t_grad_ready)(&impl());
    return;
  }
  // Topological order by iterative DFS, then a sweep in reverse.
  std::vector<Node*> order;
  std::unordered_set<Node*> seen;
  std::vector<std::pair<Node*, size_t>> stack{{grad_fn().get(), 0}};
  seen.insert(grad_fn().get());
  while (!stack.empty()) {
    auto& [n, i] = stack.back();
    if (i < n->next.size()) {
      Node* c = n->next[i++].node.get();
      if (c && seen.insert(c).second) stack.push_back({c, 0});
    } else {
      order.push_back(n);
      stack.pop_back();
    }
  }
  // With a GradReadyHook: per leaf, the nodes still to run that have an edge into it.
  const GradReadyHook::Fn* ready = t_grad_ready;
  std::unordered_map<const TensorImpl*, int> pending;
  if (ready)
    for (Node* n : order)
      for (const Edge& e : n->next)
        if (e.leaf) ++pending[e.leaf.get()];
  auto node_done = [&](Node* n) {
    if (!ready) return;
    for (const Edge& e : n->next)
      if (e.leaf && --pending[e.leaf.get()] == 0) (*ready)(e.leaf.get());
  };
  std::unordered_map<Node*, Tensor> grads;
  grads[grad_fn().get()] = seed;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node* n = *it;
    auto gi = grads.find(n);
    if (gi == grads.end()) {  // nothing flowed here
      node_done(n);
      continue;
    }
    Tensor g = gi->second;
    grads.erase(gi);
    TensorList in_grads = n->apply(g);
    if (in_grads.size() != n->next.size())
      throw std::logic_error(std::string("backward of '") + n->name() + "' returned " +
                             std::to_string(in_grads.size()) + " gradients for " +
                             std::to_string(n->next.size()) + " inputs");
    for (size_t k = 0; k < in_grads.size(); ++k) {
      const Edge& e = n->next[k];
      const Tensor& ig = in_grads[k];
      if (!ig.defined() || (!e.node && !e.leaf)) continue;
      if (ig.shape() != n->input_shapes[k])
        throw std::logic_error(std::string("backward of '") + n->name() + "': gradient " +
                               std::to_string(k) + " has shape " + shape_str(ig.shape()) +
                               ", input had shape " + shape_str(n->input_shapes[k]));
      if (e.node) {
        accumulate(grads[e.node.get()], ig);
      } else {
        Tensor slot = e.leaf->grad ? Tensor(e.leaf->grad) : Tensor();
        Tensor cast = ig.dtype() == e.leaf->dtype ? ig : to_dtype(ig, e.leaf->dtype);
        // A fresh tensor, never an alias of a gradient another leaf also received.
        slot = slot.defined() ? add(slot, cast) : cast.clone();
        e.leaf->grad = slot.impl_ptr();
      }
    }
    node_done(n);
    if (!retain_graph) n->release();
  }
}

}  // namespace mtalab
