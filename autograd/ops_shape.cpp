// Shape ops. Views (reshape of contiguous data, permute, transpose, slice, expand)
// share storage; concat, contiguous and dtype casts copy.
#include "autograd/ops_util.h"

namespace mtalab {

namespace detail {
Tensor make_view(const Tensor& x, const Shape& shape, const Shape& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = x.storage();
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = x.dtype();
  return Tensor(impl);
}
Tensor materialize(const Tensor& x) {
  if (x.is_contiguous()) return x;
  Tensor out = Tensor::empty(x.shape(), x.options());
  copy_kernel(x.device())(x, out);
  return out;
}
}  // namespace detail

using detail::make_view;

namespace {
Shape infer_shape(const Shape& s, int64_t numel, const Shape& from) {
  Shape r = s;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < r.size(); ++i) {
    if (r[i] == -1) {
      if (infer >= 0) throw std::invalid_argument("reshape: more than one -1 in " + shape_str(s));
      infer = (int64_t)i;
    } else {
      known *= r[i];
    }
  }
  if (infer >= 0 && known > 0 && numel % known == 0) r[infer] = numel / known;
  if (shape_numel(r) != numel)
    throw std::invalid_argument("reshape: cannot view " + shape_str(from) + " (" + std::to_string(numel) +
                                " elements) as " + shape_str(s));
  return r;
}
}  // namespace

struct ReshapeOp {
  static constexpr const char* name = "reshape";
  static Tensor forward(Context& ctx, const Tensor& x, const Shape& s) {
    ctx.shapes = {x.shape()};
    const Shape ns = infer_shape(s, x.numel(), x.shape());
    Tensor c = detail::materialize(x);
    return make_view(c, ns, contiguous_strides(ns), c.offset());
  }
  static TensorList backward(Context& ctx, const Tensor& g) { return {reshape(g, ctx.shapes[0])}; }
};
Tensor reshape(const Tensor& x, const Shape& s) { return Function<ReshapeOp>::apply(x, s); }

struct PermuteOp {
  static constexpr const char* name = "permute";
  static Tensor forward(Context& ctx, const Tensor& x, const std::vector<int64_t>& dims) {
    if ((int64_t)dims.size() != x.dim())
      throw std::invalid_argument("permute: " + std::to_string(dims.size()) + " dims given for shape " +
                                  shape_str(x.shape()));
    Shape s(x.dim()), st(x.dim());
    std::vector<int64_t> inv(x.dim(), -1);
    for (int64_t i = 0; i < x.dim(); ++i) {
      const int64_t d = wrap_dim(dims[i], x.dim(), name);
      if (inv[d] >= 0) throw std::invalid_argument("permute: dimension " + std::to_string(d) + " repeated");
      inv[d] = i;
      s[i] = x.shape()[d];
      st[i] = x.strides()[d];
    }
    ctx.ints = inv;
    return make_view(x, s, st, x.offset());
  }
  static TensorList backward(Context& ctx, const Tensor& g) { return {permute(g, ctx.ints)}; }
};
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) { return Function<PermuteOp>::apply(x, dims); }
Tensor transpose(const Tensor& x, int64_t a, int64_t b) {
  std::vector<int64_t> p(x.dim());
  for (int64_t i = 0; i < x.dim(); ++i) p[i] = i;
  std::swap(p[wrap_dim(a, x.dim(), "transpose")], p[wrap_dim(b, x.dim(), "transpose")]);
  return permute(x, p);
}

struct SliceOp {
  static constexpr const char* name = "slice";
  static Tensor forward(Context& ctx, const Tensor& x, int64_t dim, int64_t start, int64_t end) {
    dim = wrap_dim(dim, x.dim(), name);
    const int64_t n = x.shape()[dim];
    if (start < 0) start += n;
    if (end < 0) end += n;
    start = std::clamp<int64_t>(start, 0, n);
    end = std::clamp<int64_t>(end, start, n);
    ctx.shapes = {x.shape()};
    ctx.ints = {dim, start, end};
    Shape s = x.shape();
    s[dim] = end - start;
    return make_view(x, s, x.strides(), x.offset() + start * x.strides()[dim]);
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    Tensor gx = zeros(ctx.shapes[0], g.options());
    const int64_t dim = ctx.ints[0], start = ctx.ints[1];
    copy_kernel(g.device())(g, make_view(gx, g.shape(), gx.strides(), start * gx.strides()[dim]));
    return {gx};
  }
};
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end) {
  return Function<SliceOp>::apply(x, dim, start, end);
}

struct ExpandOp {
  static constexpr const char* name = "expand";
  static Tensor forward(Context& ctx, const Tensor& x, const Shape& target) {
    if (target.size() < (size_t)x.dim())
      throw std::invalid_argument("expand: cannot expand " + shape_str(x.shape()) + " to " + shape_str(target));
    const int64_t lead = (int64_t)target.size() - x.dim();
    Shape s(target.size()), st(target.size(), 0);
    for (int64_t i = 0; i < (int64_t)target.size(); ++i) {
      if (i < lead) {
        s[i] = target[i];
        continue;
      }
      const int64_t xs = x.shape()[i - lead];
      const int64_t t = target[i] == -1 ? xs : target[i];
      if (xs != t && xs != 1)
        throw std::invalid_argument("expand: cannot expand " + shape_str(x.shape()) + " to " + shape_str(target));
      s[i] = t;
      st[i] = xs == t ? x.strides()[i - lead] : 0;
    }
    ctx.shapes = {x.shape()};
    return make_view(x, s, st, x.offset());
  }
  static TensorList backward(Context& ctx, const Tensor& g) { return {sum_to(g, ctx.shapes[0])}; }
};
Tensor expand(const Tensor& x, const Shape& s) { return Function<ExpandOp>::apply(x, s); }

struct ContiguousOp {
  static constexpr const char* name = "contiguous";
  static Tensor forward(Context&, const Tensor& x) { return detail::materialize(x); }
  static TensorList backward(Context&, const Tensor& g) { return {g}; }
};
Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  return Function<ContiguousOp>::apply(x);
}

struct ToDTypeOp {
  static constexpr const char* name = "to_dtype";
  static Tensor forward(Context& ctx, const Tensor& x, DType t) {
    ctx.ints = {(int64_t)x.dtype()};
    Tensor out = Tensor::empty(x.shape(), {t, x.device()});
    copy_kernel(x.device())(x, out);
    return out;
  }
  static TensorList backward(Context& ctx, const Tensor& g) { return {to_dtype(g, (DType)ctx.ints[0])}; }
};
Tensor to_dtype(const Tensor& x, DType t) {
  if (x.dtype() == t) return x;
  if (!is_floating(t) || !is_floating(x.dtype())) {  // integer casts carry no gradient
    Tensor out = Tensor::empty(x.shape(), {t, x.device()});
    copy_kernel(x.device())(x, out);
    return out;
  }
  return Function<ToDTypeOp>::apply(x, t);
}

// Function<Op> records one edge per Tensor argument, but concat takes a list, so
// concat() below records its node (ConcatNode, one edge per element) by hand.
struct ConcatOp {
  static constexpr const char* name = "concat";
  static Tensor forward(Context& ctx, const TensorList& xs, int64_t dim) {
    Shape s = xs[0].shape();
    dim = wrap_dim(dim, xs[0].dim(), name);
    int64_t total = 0;
    for (const auto& x : xs) {
      detail::check_compatible(name, xs[0], x);
      Shape a = x.shape(), b = xs[0].shape();
      if (a.size() != b.size()) throw std::invalid_argument("concat: shapes " + shape_str(b) + " and " + shape_str(a) + " differ in rank");
      a[dim] = b[dim] = 0;
      if (a != b)
        throw std::invalid_argument("concat: shapes " + shape_str(xs[0].shape()) + " and " + shape_str(x.shape()) +
                                    " differ outside dimension " + std::to_string(dim));
      ctx.ints.push_back(x.shape()[dim]);
      total += x.shape()[dim];
    }
    s[dim] = total;
    Tensor out = Tensor::empty(s, xs[0].options());
    int64_t at = 0;
    for (const auto& x : xs) {
      copy_kernel(x.device())(x, make_view(out, x.shape(), out.strides(), at * out.strides()[dim]));
      at += x.shape()[dim];
    }
    ctx.ints.push_back(dim);
    return out;
  }
};

namespace {
// Node for concat: one edge per list element.
class ConcatNode final : public Node {
 public:
  std::vector<int64_t> sizes;
  int64_t dim = 0;
  const char* name() const override { return "concat"; }
  TensorList apply(const Tensor& g) override {
    TensorList r;
    int64_t at = 0;
    for (auto n : sizes) {
      r.push_back(slice(g, dim, at, at + n));
      at += n;
    }
    return r;
  }
  void release() override {}
};
}  // namespace

Tensor concat(const TensorList& xs, int64_t dim) {
  if (xs.empty()) throw std::invalid_argument("concat: empty list");
  Context ctx;
  Tensor out;
  {
    NoGradGuard ng;
    out = ConcatOp::forward(ctx, xs, dim);
  }
  if (!grad_enabled() || !detail::any_requires_grad(xs)) return out;
  auto node = std::make_shared<ConcatNode>();
  node->dim = ctx.ints.back();
  node->sizes.assign(ctx.ints.begin(), ctx.ints.end() - 1);
  detail::connect(*node, xs, ctx);
  detail::attach(out, node);
  return out;
}

void copy_(const Tensor& dst, const Tensor& src) {
  if (dst.device() != src.device())
    throw std::invalid_argument("copy_: device mismatch, " + dst.device().str() + " " + shape_str(dst.shape()) +
                                " vs " + src.device().str() + " " + shape_str(src.shape()));
  if (broadcast_shapes(dst.shape(), src.shape(), "copy_") != dst.shape())
    throw std::invalid_argument("copy_: source " + shape_str(src.shape()) + " does not broadcast to destination " +
                                shape_str(dst.shape()));
  copy_kernel(dst.device())(src.detach().expand(dst.shape()), dst);
}

TensorList split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (auto s : sizes) total += s;
  if (total != x.shape()[dim])
    throw std::invalid_argument("split: sizes sum to " + std::to_string(total) + " but dimension " +
                                std::to_string(dim) + " of " + shape_str(x.shape()) + " is " +
                                std::to_string(x.shape()[dim]));
  TensorList r;
  int64_t at = 0;
  for (auto s : sizes) {
    r.push_back(slice(x, dim, at, at + s));
    at += s;
  }
  return r;
}

}  // namespace mtalab
