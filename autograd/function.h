// How a differentiable op is written: one struct, one forward, one backward.
//
//   struct ExpOp {
//     static constexpr const char* name = "exp";
//     static Tensor forward(Context& ctx, const Tensor& x) {
//       Tensor y = unary_kernel(UnaryKind::exp, x);   // compute, no graph recorded here
//       ctx.save({y});                                 // what backward needs
//       return y;
//     }
//     static TensorList backward(Context& ctx, const Tensor& g) {
//       return {mul(g, ctx.saved[0])};                 // one gradient per tensor input
//     }
//   };
//   Tensor exp(const Tensor& x) { return Function<ExpOp>::apply(x); }
//
// apply() runs forward with grad recording off, then, when grad mode is on and any
// tensor argument requires grad, records a node whose backward is Op::backward.
// Non-tensor arguments are passed through to forward untouched; backward must return
// one entry per tensor argument, in order (an undefined Tensor means "no gradient").
// Saved tensors are detached aliases (no cycle through the graph) and are released
// when the node has run backward, unless retain_graph was asked for.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "autograd/tensor.h"

namespace mtalab {

struct Context {
  TensorList saved;
  std::vector<Shape> shapes;
  std::vector<int64_t> ints;
  std::vector<double> scalars;
  std::vector<bool> needs_input_grad;  // one per tensor input, filled before forward
  std::shared_ptr<void> extra;         // anything else an op wants to keep

  void save(const TensorList& ts);
  bool needs_grad(size_t i) const { return i < needs_input_grad.size() && needs_input_grad[i]; }
};

// Where a gradient flows: into another node's input slot, or into a leaf's .grad.
struct Edge {
  std::shared_ptr<Node> node;
  std::shared_ptr<TensorImpl> leaf;
};

class Node {
 public:
  virtual ~Node() = default;
  virtual const char* name() const = 0;
  virtual TensorList apply(const Tensor& grad_output) = 0;
  virtual void release() = 0;  // drop saved tensors after backward
  std::vector<Edge> next;      // one per tensor input; empty edge when no grad needed
  std::vector<Shape> input_shapes;
  std::vector<DType> input_dtypes;
  Shape output_shape;
};

namespace detail {
inline void collect(TensorList&) {}
template <typename A, typename... Rest>
void collect(TensorList& out, const A& a, const Rest&... rest) {
  if constexpr (std::is_same_v<std::decay_t<A>, Tensor>) out.push_back(a);
  collect(out, rest...);
}
bool any_requires_grad(const TensorList& ts);
void connect(Node& node, const TensorList& inputs, Context& ctx);
void attach(Tensor& out, std::shared_ptr<Node> node);

template <typename Op>
class FunctionNode final : public Node {
 public:
  Context ctx;
  const char* name() const override { return Op::name; }
  TensorList apply(const Tensor& g) override { return Op::backward(ctx, g); }
  void release() override {
    ctx.saved.clear();
    ctx.extra.reset();
  }
};
}  // namespace detail

template <typename Op>
struct Function {
  template <typename... Args>
  static Tensor apply(const Args&... args) {
    TensorList inputs;
    detail::collect(inputs, args...);
    const bool record = grad_enabled() && detail::any_requires_grad(inputs);
    if (!record) {
      Context ctx;
      ctx.needs_input_grad.assign(inputs.size(), false);
      NoGradGuard ng;
      return Op::forward(ctx, args...);
    }
    auto node = std::make_shared<detail::FunctionNode<Op>>();
    detail::connect(*node, inputs, node->ctx);
    Tensor out;
    {
      NoGradGuard ng;
      out = Op::forward(node->ctx, args...);
    }
    detail::attach(out, node);
    return out;
  }
};

}  // namespace mtalab
