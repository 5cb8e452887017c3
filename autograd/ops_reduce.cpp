// Reductions: sum, mean, max over any set of dims, logsumexp; sum_to for broadcasting.
#include <algorithm>

#include "autograd/ops_util.h"

namespace mtalab {

namespace detail {
std::vector<int64_t> normalize_dims(std::vector<int64_t> dims, int64_t ndim, const char* op) {
  if (dims.empty())
    for (int64_t d = 0; d < ndim; ++d) dims.push_back(d);
  for (auto& d : dims) d = wrap_dim(d, ndim, op);
  std::sort(dims.begin(), dims.end());
  dims.erase(std::unique(dims.begin(), dims.end()), dims.end());
  return dims;
}
}  // namespace detail

namespace {
Shape keep_shape(const Shape& s, const std::vector<int64_t>& dims) {
  Shape k = s;
  for (auto d : dims) k[d] = 1;
  return k;
}
Shape drop_shape(const Shape& s, const std::vector<int64_t>& dims) {
  Shape k;
  for (int64_t i = 0; i < (int64_t)s.size(); ++i)
    if (!std::binary_search(dims.begin(), dims.end(), i)) k.push_back(s[i]);
  return k;
}
// Reduces one dim at a time, innermost first, each pass on a contiguous tensor.
Tensor reduce_raw(ReduceKind k, const Tensor& x, const std::vector<int64_t>& dims) {
  Tensor cur = detail::materialize(x);
  for (auto it = dims.rbegin(); it != dims.rend(); ++it) {
    Shape s = cur.shape();
    if (s[*it] == 1) continue;
    s[*it] = 1;
    Tensor out = Tensor::empty(s, x.options());
    reduce_kernel(x.device())(k, cur, *it, out);
    cur = out;
  }
  if (cur.same(x)) cur = x.detach().clone();  // never alias the input's storage
  return cur;
}
}  // namespace

struct SumOp {
  static constexpr const char* name = "sum";
  static Tensor forward(Context& ctx, const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
    detail::check_float(name, x);
    dims = detail::normalize_dims(dims, x.dim(), name);
    ctx.shapes = {x.shape(), keep_shape(x.shape(), dims)};
    Tensor r = reduce_raw(ReduceKind::sum, x, dims);
    return keepdim ? r : r.reshape(drop_shape(x.shape(), dims));
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    return {expand(reshape(g, ctx.shapes[1]), ctx.shapes[0])};
  }
};

struct MaxOp {
  static constexpr const char* name = "max";
  static Tensor forward(Context& ctx, const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
    detail::check_float(name, x);
    dims = detail::normalize_dims(dims, x.dim(), name);
    for (auto d : dims)
      if (x.shape()[d] == 0) throw std::invalid_argument("max: reduction over an empty dimension of " + shape_str(x.shape()));
    Tensor r = reduce_raw(ReduceKind::max, x, dims);
    ctx.save({x, r});
    ctx.ints = dims;
    return keepdim ? r : r.reshape(drop_shape(x.shape(), dims));
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    // Gradient goes to the maxima, split evenly between ties.
    const Tensor &x = ctx.saved[0], &m = ctx.saved[1];
    Tensor hit = eq(x, m);
    Tensor count = sum(hit, ctx.ints, true);
    return {mul(div(reshape(g, m.shape()), count), hit)};
  }
};

Tensor sum(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  return Function<SumOp>::apply(x, dims, keepdim);
}
Tensor max(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  return Function<MaxOp>::apply(x, dims, keepdim);
}
Tensor mean(const Tensor& x, std::vector<int64_t> dims, bool keepdim) {
  dims = detail::normalize_dims(dims, x.dim(), "mean");
  int64_t n = 1;
  for (auto d : dims) n *= x.shape()[d];
  return div(sum(x, dims, keepdim), (double)std::max<int64_t>(n, 1));
}
Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim) {
  // lse(x) = log(sum(exp(x - m))) + m for any constant m: m = max keeps exp from
  // overflowing, and holding it constant (detached) leaves the gradient exact.
  dim = wrap_dim(dim, x.dim(), "logsumexp");
  Tensor m = max(x.detach(), {dim}, true);
  Tensor r = add(log(sum(exp(sub(x, m)), {dim}, true)), m);
  return keepdim ? r : r.squeeze(dim);
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int64_t lead = x.dim() - (int64_t)shape.size();
  if (lead < 0) throw std::invalid_argument("sum_to: cannot reduce " + shape_str(x.shape()) + " to " + shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (i < lead) {
      dims.push_back(i);
    } else if (shape[i - lead] == 1 && x.shape()[i] != 1) {
      dims.push_back(i);
    } else if (shape[i - lead] != x.shape()[i]) {
      throw std::invalid_argument("sum_to: cannot reduce " + shape_str(x.shape()) + " to " + shape_str(shape));
    }
  }
  if (dims.empty()) return reshape(x, shape);
  return reshape(sum(x, dims, true), shape);
}

}  // namespace mtalab
