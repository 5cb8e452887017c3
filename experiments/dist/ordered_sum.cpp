#include "experiments/dist/ordered_sum.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "autograd/ops.h"
#include "experiments/dist/communicator.h"

namespace mtalab::dist {

void fold_into(std::vector<Tensor>& acc, const std::vector<Tensor>& g) {
  NoGradGuard ng;
  if (acc.empty()) acc.resize(g.size());
  for (size_t i = 0; i < g.size(); ++i) {
    if (!g[i].defined()) continue;
    acc[i] = acc[i].defined() ? add(acc[i], g[i]) : g[i];
  }
}

namespace {

constexpr int kTagChain = 11, kTagTotal = 12;

template <class T>
void put(std::vector<char>& out, const T* p, size_t n) {
  out.insert(out.end(), (const char*)p, (const char*)(p + n));
}

// [int32 stop][int32 n][n doubles: losses][uint8 per parameter: defined][values of the
// defined ones: float64 parameters as double, every other dtype as float (exact for bf16)]
std::vector<char> pack(const StepTotal& t) {
  std::vector<char> out;
  const int32_t stop = t.stop, n = (int32_t)t.losses.size();
  put(out, &stop, 1);
  put(out, &n, 1);
  put(out, t.losses.data(), t.losses.size());
  for (const Tensor& g : t.grads) out.push_back(g.defined() ? 1 : 0);
  for (const Tensor& g : t.grads) {
    if (!g.defined()) continue;
    if (g.dtype() == DType::f64) {
      const auto v = g.to_vector<double>();
      put(out, v.data(), v.size());
    } else {
      const auto v = g.to_vector<float>();
      put(out, v.data(), v.size());
    }
  }
  return out;
}

StepTotal unpack(const std::vector<char>& in, const std::vector<Tensor>& params, const char* what) {
  StepTotal t;
  size_t at = 0;
  auto take = [&](void* dst, size_t bytes) {
    if (at + bytes > in.size())
      throw CommError("rank " + std::to_string(rank()) + ": a short message (" + std::to_string(in.size()) +
                      " bytes) while exchanging " + what + "; expected the same model on every rank");
    std::memcpy(dst, in.data() + at, bytes);
    at += bytes;
  };
  int32_t stop = 0, n = 0;
  take(&stop, sizeof stop);
  take(&n, sizeof n);
  t.stop = stop;
  t.losses.resize((size_t)n);
  take(t.losses.data(), sizeof(double) * (size_t)n);
  std::vector<char> defined(params.size());
  take(defined.data(), defined.size());
  t.grads.resize(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (!defined[i]) continue;
    const Tensor& p = params[i];
    const size_t count = (size_t)p.numel();
    TensorOptions o{p.dtype(), p.device()};
    if (p.dtype() == DType::f64) {
      std::vector<double> v(count);
      take(v.data(), count * sizeof(double));
      t.grads[i] = from_vector(v, p.shape(), o);
    } else {
      std::vector<float> v(count);
      take(v.data(), count * sizeof(float));
      t.grads[i] = from_vector(v, p.shape(), o);
    }
  }
  return t;
}

}  // namespace

StepTotal ordered_sum(StepPart part, const std::vector<Tensor>& params, int64_t step) {
  const int r = rank(), n = size();
  StepTotal t;
  if (n == 1) {
    t.grads = std::move(part.fold);
    t.grads.resize(params.size());
    t.losses = std::move(part.losses);
    t.stop = part.stop;
    return t;
  }
  const std::string what = "the gradient sum of step " + std::to_string(step);
  if (r == 0) {
    t.grads = std::move(part.fold);
    t.grads.resize(params.size());
  } else {
    t = unpack(recv(r - 1, kTagChain, what.c_str()), params, what.c_str());
    for (const auto& g : part.stash) fold_into(t.grads, g);
  }
  t.losses.insert(t.losses.end(), part.losses.begin(), part.losses.end());
  t.stop = std::max(t.stop, part.stop);
  if (r < n - 1) {
    send(pack(t), r + 1, kTagChain, what.c_str());
    return unpack(recv(n - 1, kTagTotal, what.c_str()), params, what.c_str());
  }
  const std::vector<char> total = pack(t);
  for (int q = 0; q < n - 1; ++q) send(total, q, kTagTotal, what.c_str());
  return t;
}

}  // namespace mtalab::dist
