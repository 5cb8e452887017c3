// Elementwise ops: forward and backward side by side.
#include <cmath>

#include "autograd/ops_util.h"

namespace mtalab {

namespace detail {

void check_compatible(const char* op, const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype())
    throw std::invalid_argument(std::string(op) + ": dtype mismatch, " + dtype_name(a.dtype()) + " " +
                                shape_str(a.shape()) + " vs " + dtype_name(b.dtype()) + " " + shape_str(b.shape()));
  check_same_device(op, a, b);
}
void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  if (a.device() != b.device())
    throw std::invalid_argument(std::string(op) + ": device mismatch, " + a.device().str() + " " +
                                shape_str(a.shape()) + " vs " + b.device().str() + " " + shape_str(b.shape()));
}
void check_float(const char* op, const Tensor& a) {
  if (!is_floating(a.dtype()))
    throw std::invalid_argument(std::string(op) + ": expected a float tensor, got " + dtype_name(a.dtype()) + " " +
                                shape_str(a.shape()));
}

Tensor run_unary(UnaryKind k, const Tensor& x, double alpha) {
  check_float("unary op", x);
  Tensor xc = materialize(x);
  Tensor y = Tensor::empty(x.shape(), x.options());
  unary_kernel(x.device())(k, xc, y, alpha);
  return y;
}

Tensor run_binary(BinaryKind k, const Tensor& a, const Tensor& b, const char* op) {
  check_compatible(op, a, b);
  check_float(op, a);
  const Shape s = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(s, a.options());
  binary_kernel(a.device())(k, a.shape() == s ? a : a.detach().expand(s), b.shape() == s ? b : b.detach().expand(s),
                            out);
  return out;
}

}  // namespace detail

using detail::run_binary;
using detail::run_unary;

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape s(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      throw std::invalid_argument(std::string(op) + ": shapes " + shape_str(a) + " and " + shape_str(b) +
                                  " do not broadcast");
    s[i] = da == 1 ? db : da;
  }
  return s;
}

// ---- binary -------------------------------------------------------------------
struct AddOp {
  static constexpr const char* name = "add";
  static Tensor forward(Context& ctx, const Tensor& a, const Tensor& b) {
    ctx.shapes = {a.shape(), b.shape()};
    return run_binary(BinaryKind::add, a, b, name);
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    return {ctx.needs_grad(0) ? sum_to(g, ctx.shapes[0]) : Tensor(),
            ctx.needs_grad(1) ? sum_to(g, ctx.shapes[1]) : Tensor()};
  }
};
struct SubOp {
  static constexpr const char* name = "sub";
  static Tensor forward(Context& ctx, const Tensor& a, const Tensor& b) {
    ctx.shapes = {a.shape(), b.shape()};
    return run_binary(BinaryKind::sub, a, b, name);
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    return {ctx.needs_grad(0) ? sum_to(g, ctx.shapes[0]) : Tensor(),
            ctx.needs_grad(1) ? sum_to(neg(g), ctx.shapes[1]) : Tensor()};
  }
};
struct MulOp {
  static constexpr const char* name = "mul";
  static Tensor forward(Context& ctx, const Tensor& a, const Tensor& b) {
    ctx.save({ctx.needs_grad(1) ? a : Tensor(), ctx.needs_grad(0) ? b : Tensor()});
    ctx.shapes = {a.shape(), b.shape()};
    return run_binary(BinaryKind::mul, a, b, name);
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    return {ctx.needs_grad(0) ? sum_to(mul(g, ctx.saved[1]), ctx.shapes[0]) : Tensor(),
            ctx.needs_grad(1) ? sum_to(mul(g, ctx.saved[0]), ctx.shapes[1]) : Tensor()};
  }
};
struct DivOp {
  static constexpr const char* name = "div";
  static Tensor forward(Context& ctx, const Tensor& a, const Tensor& b) {
    Tensor y = run_binary(BinaryKind::div, a, b, name);
    ctx.save({b, ctx.needs_grad(1) ? y : Tensor()});
    ctx.shapes = {a.shape(), b.shape()};
    return y;
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    const Tensor& b = ctx.saved[0];
    Tensor ga = div(g, b);  // d(a/b)/da = 1/b; d(a/b)/db = -y/b
    return {ctx.needs_grad(0) ? sum_to(ga, ctx.shapes[0]) : Tensor(),
            ctx.needs_grad(1) ? sum_to(neg(mul(ga, ctx.saved[1])), ctx.shapes[1]) : Tensor()};
  }
};
struct PowOp {
  static constexpr const char* name = "pow";
  static Tensor forward(Context& ctx, const Tensor& a, const Tensor& b) {
    Tensor y = run_binary(BinaryKind::pow, a, b, name);
    ctx.save({a, b, y});
    ctx.shapes = {a.shape(), b.shape()};
    return y;
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    const Tensor &a = ctx.saved[0], &b = ctx.saved[1], &y = ctx.saved[2];
    return {ctx.needs_grad(0) ? sum_to(mul(g, mul(b, pow(a, sub(b, 1.0)))), ctx.shapes[0]) : Tensor(),
            ctx.needs_grad(1) ? sum_to(mul(g, mul(y, log(a))), ctx.shapes[1]) : Tensor()};
  }
};
struct MaximumOp {
  static constexpr const char* name = "maximum";
  static Tensor forward(Context& ctx, const Tensor& a, const Tensor& b) {
    ctx.save({a, b});
    ctx.shapes = {a.shape(), b.shape()};
    return run_binary(BinaryKind::maximum, a, b, name);
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    // Ties split the gradient evenly.
    const Tensor &a = ctx.saved[0], &b = ctx.saved[1];
    Tensor wa = add(gt(a, b), mul(eq(a, b), 0.5));
    return {ctx.needs_grad(0) ? sum_to(mul(g, wa), ctx.shapes[0]) : Tensor(),
            ctx.needs_grad(1) ? sum_to(mul(g, rsub(1.0, wa)), ctx.shapes[1]) : Tensor()};
  }
};

Tensor add(const Tensor& a, const Tensor& b) { return Function<AddOp>::apply(a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return Function<SubOp>::apply(a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return Function<MulOp>::apply(a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return Function<DivOp>::apply(a, b); }
Tensor pow(const Tensor& a, const Tensor& b) { return Function<PowOp>::apply(a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return Function<MaximumOp>::apply(a, b); }
Tensor eq(const Tensor& a, const Tensor& b) { return run_binary(BinaryKind::eq, a.detach(), b.detach(), "eq"); }
Tensor gt(const Tensor& a, const Tensor& b) { return run_binary(BinaryKind::gt, a.detach(), b.detach(), "gt"); }
Tensor lt(const Tensor& a, const Tensor& b) { return run_binary(BinaryKind::lt, a.detach(), b.detach(), "lt"); }

// ---- unary (one struct per kind; backward by the derivative's formula) ----------
template <UnaryKind K>
struct UnaryOp {
  static constexpr const char* name = K == UnaryKind::neg ? "neg" : K == UnaryKind::exp ? "exp"
      : K == UnaryKind::log ? "log" : K == UnaryKind::sqrt ? "sqrt" : K == UnaryKind::rsqrt ? "rsqrt"
      : K == UnaryKind::abs ? "abs" : K == UnaryKind::tanh ? "tanh" : K == UnaryKind::sigmoid ? "sigmoid"
      : K == UnaryKind::relu ? "relu" : K == UnaryKind::silu ? "silu" : K == UnaryKind::gelu ? "gelu"
      : K == UnaryKind::pow_scalar ? "pow" : K == UnaryKind::add_scalar ? "add_scalar"
      : K == UnaryKind::mul_scalar ? "mul_scalar" : K == UnaryKind::rsub_scalar ? "rsub_scalar"
      : K == UnaryKind::rdiv_scalar ? "rdiv_scalar" : "unary";
  static Tensor forward(Context& ctx, const Tensor& x, double alpha) {
    Tensor y = run_unary(K, x, alpha);
    // Keep only what the derivative reads (saved tensors hold memory until backward).
    constexpr bool kX = K == UnaryKind::log || K == UnaryKind::abs || K == UnaryKind::relu ||
                        K == UnaryKind::silu || K == UnaryKind::gelu || K == UnaryKind::pow_scalar ||
                        K == UnaryKind::rdiv_scalar;
    constexpr bool kY = K == UnaryKind::exp || K == UnaryKind::sqrt || K == UnaryKind::rsqrt ||
                        K == UnaryKind::tanh || K == UnaryKind::sigmoid || K == UnaryKind::rdiv_scalar;
    ctx.scalars = {alpha};
    ctx.save({kX ? x : Tensor(), kY ? y : Tensor()});
    return y;
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    const Tensor &x = ctx.saved[0], &y = ctx.saved[1];
    const double a = ctx.scalars[0];
    switch (K) {
      case UnaryKind::neg: return {neg(g)};
      case UnaryKind::exp: return {mul(g, y)};
      case UnaryKind::log: return {div(g, x)};
      case UnaryKind::sqrt: return {div(mul(g, 0.5), y)};
      case UnaryKind::rsqrt: return {mul(g, mul(pow(y, 3.0), -0.5))};
      case UnaryKind::abs: return {mul(g, run_unary(UnaryKind::sign, x))};
      case UnaryKind::tanh: return {mul(g, rsub(1.0, mul(y, y)))};
      case UnaryKind::sigmoid: return {mul(g, mul(y, rsub(1.0, y)))};
      case UnaryKind::relu: return {mul(g, run_unary(UnaryKind::step, x))};
      case UnaryKind::silu: return {mul(g, run_unary(UnaryKind::silu_grad, x))};
      case UnaryKind::gelu: return {mul(g, run_unary(UnaryKind::gelu_grad, x))};
      case UnaryKind::pow_scalar: return {mul(g, mul(pow(x, a - 1.0), a))};
      case UnaryKind::add_scalar: return {g};
      case UnaryKind::mul_scalar: return {mul(g, a)};
      case UnaryKind::rsub_scalar: return {neg(g)};
      case UnaryKind::rdiv_scalar: return {neg(div(mul(g, y), x))};
      default: throw std::logic_error(std::string("no backward for unary op ") + name);
    }
  }
};
template <UnaryKind K>
static Tensor unary(const Tensor& x, double alpha = 0) {
  return Function<UnaryOp<K>>::apply(x, alpha);
}

Tensor neg(const Tensor& x) { return unary<UnaryKind::neg>(x); }
Tensor exp(const Tensor& x) { return unary<UnaryKind::exp>(x); }
Tensor log(const Tensor& x) { return unary<UnaryKind::log>(x); }
Tensor sqrt(const Tensor& x) { return unary<UnaryKind::sqrt>(x); }
Tensor rsqrt(const Tensor& x) { return unary<UnaryKind::rsqrt>(x); }
Tensor abs(const Tensor& x) { return unary<UnaryKind::abs>(x); }
Tensor tanh(const Tensor& x) { return unary<UnaryKind::tanh>(x); }
Tensor sigmoid(const Tensor& x) { return unary<UnaryKind::sigmoid>(x); }
Tensor relu(const Tensor& x) { return unary<UnaryKind::relu>(x); }
Tensor silu(const Tensor& x) { return unary<UnaryKind::silu>(x); }
Tensor gelu(const Tensor& x) { return unary<UnaryKind::gelu>(x); }
Tensor square(const Tensor& x) { return unary<UnaryKind::pow_scalar>(x, 2.0); }
Tensor pow(const Tensor& x, double p) { return unary<UnaryKind::pow_scalar>(x, p); }
Tensor add(const Tensor& a, double s) { return unary<UnaryKind::add_scalar>(a, s); }
Tensor sub(const Tensor& a, double s) { return unary<UnaryKind::add_scalar>(a, -s); }
Tensor rsub(double s, const Tensor& a) { return unary<UnaryKind::rsub_scalar>(a, s); }
Tensor mul(const Tensor& a, double s) { return unary<UnaryKind::mul_scalar>(a, s); }
Tensor div(const Tensor& a, double s) { return unary<UnaryKind::mul_scalar>(a, 1.0 / s); }
Tensor rdiv(double s, const Tensor& a) { return unary<UnaryKind::rdiv_scalar>(a, s); }

// ---- where / masked_fill ----------------------------------------------------------
struct WhereOp {
  static constexpr const char* name = "where";
  static Tensor forward(Context& ctx, const Tensor& cond, const Tensor& a, const Tensor& b) {
    detail::check_compatible(name, a, b);
    detail::check_compatible(name, cond, a);
    const Shape s = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), name), b.shape(), name);
    Tensor out = Tensor::empty(s, a.options());
    where_kernel(a.device())(cond.detach().expand(s), a.detach().expand(s), b.detach().expand(s), out);
    ctx.save({cond});
    ctx.shapes = {a.shape(), b.shape()};
    return out;
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    const Tensor& c = ctx.saved[0];
    Tensor z = zeros({}, g.options());
    return {Tensor(), ctx.needs_grad(1) ? sum_to(where(c, g, z), ctx.shapes[0]) : Tensor(),
            ctx.needs_grad(2) ? sum_to(where(c, z, g), ctx.shapes[1]) : Tensor()};
  }
};
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) { return Function<WhereOp>::apply(cond, a, b); }

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  if (broadcast_shapes(x.shape(), mask.shape(), "masked_fill") != x.shape())
    throw std::invalid_argument("masked_fill: mask " + shape_str(mask.shape()) + " does not broadcast to input " +
                                shape_str(x.shape()));
  return where(mask.dtype() == x.dtype() ? mask : mask.to(x.dtype()), full({}, value, x.options()), x);
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& a) { return neg(a); }
Tensor operator+(const Tensor& a, double s) { return add(a, s); }
Tensor operator-(const Tensor& a, double s) { return sub(a, s); }
Tensor operator*(const Tensor& a, double s) { return mul(a, s); }
Tensor operator/(const Tensor& a, double s) { return div(a, s); }
Tensor operator+(double s, const Tensor& a) { return add(a, s); }
Tensor operator-(double s, const Tensor& a) { return rsub(s, a); }
Tensor operator*(double s, const Tensor& a) { return mul(a, s); }
Tensor operator/(double s, const Tensor& a) { return rdiv(s, a); }

}  // namespace mtalab
