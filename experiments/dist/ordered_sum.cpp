#include "experiments/dist/ordered_sum.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "autograd/ops.h"
#include "experiments/dist/communicator.h"

namespace mtalab::dist {

void fold_one(Tensor& acc, const Tensor& g) {
  NoGradGuard ng;
  if (g.defined()) acc = acc.defined() ? add(acc, g) : g;
}

void fold_into(std::vector<Tensor>& acc, const std::vector<Tensor>& g) {
  if (acc.empty()) acc.resize(g.size());
  for (size_t i = 0; i < g.size(); ++i) fold_one(acc[i], g[i]);
}

size_t packed_capacity(const std::vector<Tensor>& params) {
  size_t n = params.size();
  for (const Tensor& p : params) n += (size_t)p.numel() * (p.dtype() == DType::f64 ? sizeof(double) : sizeof(float));
  return n;
}

namespace {

constexpr int kTagChain = 11, kTagTotal = 12;

template <class T>
void put(std::vector<char>& out, const T* p, size_t n) {
  out.insert(out.end(), (const char*)p, (const char*)(p + n));
}

}  // namespace

void pack_grads(std::vector<char>& out, const std::vector<Tensor>& grads) {
  for (const Tensor& g : grads) out.push_back(g.defined() ? 1 : 0);
  for (const Tensor& g : grads) {
    if (!g.defined()) continue;
    if (g.dtype() == DType::f64) {
      const auto v = g.to_vector<double>();
      put(out, v.data(), v.size());
    } else {
      const auto v = g.to_vector<float>();
      put(out, v.data(), v.size());
    }
  }
}

std::vector<Tensor> unpack_grads(const char* in, size_t size, size_t& at, const std::vector<Tensor>& params,
                                 const char* what) {
  auto take = [&](void* dst, size_t bytes) {
    if (at + bytes > size)
      throw CommError("rank " + std::to_string(rank()) + ": a short message (" + std::to_string(size) +
                      " bytes) while exchanging " + what + "; expected the same model on every rank");
    std::memcpy(dst, in + at, bytes);
    at += bytes;
  };
  std::vector<char> defined(params.size());
  take(defined.data(), defined.size());
  std::vector<Tensor> grads(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (!defined[i]) continue;
    const Tensor& p = params[i];
    const size_t count = (size_t)p.numel();
    TensorOptions o{p.dtype(), p.device()};
    if (p.dtype() == DType::f64) {
      std::vector<double> v(count);
      take(v.data(), count * sizeof(double));
      grads[i] = from_vector(v, p.shape(), o);
    } else {
      std::vector<float> v(count);
      take(v.data(), count * sizeof(float));
      grads[i] = from_vector(v, p.shape(), o);
    }
  }
  return grads;
}

namespace {

// [int32 stop][int32 n][n doubles: losses][pack_grads]
std::vector<char> pack(const StepTotal& t) {
  std::vector<char> out;
  out.reserve(2 * sizeof(int32_t) + sizeof(double) * t.losses.size() + t.grads.size());
  const int32_t stop = t.stop, n = (int32_t)t.losses.size();
  put(out, &stop, 1);
  put(out, &n, 1);
  put(out, t.losses.data(), t.losses.size());
  pack_grads(out, t.grads);
  return out;
}

StepTotal unpack(const std::vector<char>& in, const std::vector<Tensor>& params, const char* what) {
  StepTotal t;
  int32_t header[2];
  size_t at = 0;
  auto short_message = [&] {
    return CommError("rank " + std::to_string(rank()) + ": a short message (" + std::to_string(in.size()) +
                     " bytes) while exchanging " + what + "; expected the same model on every rank");
  };
  if (in.size() < sizeof header) throw short_message();
  std::memcpy(header, in.data(), sizeof header);
  at = sizeof header;
  t.stop = header[0];
  t.losses.resize((size_t)std::max(0, header[1]));
  const size_t bytes = sizeof(double) * t.losses.size();
  if (at + bytes > in.size()) throw short_message();
  std::memcpy(t.losses.data(), in.data() + at, bytes);
  at += bytes;
  t.grads = unpack_grads(in.data(), in.size(), at, params, what);
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
