// The identity initialisers of MTA's kernels (layers/mta_init.h): with them kq_conv is
// Mask_0 and head_mix keeps the lower triangle, so an MTA layer starts as softmax attention.
#include <doctest/doctest.h>

#include <vector>

#include "autograd/ops.h"
#include "gradcheck.h"
#include "layers/mta_init.h"

using namespace mtalab;
using testing::rand_f64;

TEST_CASE("kq_conv: identity kernel gives Mask_0(x) in every pad mode") {
  const int64_t B = 2, H = 3, T = 9;
  const Tensor x = rand_f64({B, H, T, T}, 700);
  const std::vector<double> xv = x.to_vector<double>();
  for (KqPad pad : {KqPad::both, KqPad::left, KqPad::right})
    for (auto [cq, ck] : {std::pair<int64_t, int64_t>{1, 1}, {2, 3}, {6, 11}, {3, 5}}) {
      CAPTURE(kq_pad_name(pad));
      const Tensor K = kq_identity_kernel(H, cq, ck, pad, {DType::f64});
      CHECK(K.shape() == Shape{H, cq, ck});
      CHECK(sum(K).item() == doctest::Approx(H));
      const std::vector<double> y = kq_conv(x, K, pad).to_vector<double>();
      int bad = 0;
      for (int64_t m = 0; m < B * H; ++m)
        for (int64_t i = 0; i < T; ++i)
          for (int64_t j = 0; j < T; ++j) {
            const int64_t e = (m * T + i) * T + j;
            bad += y[e] != (j <= i ? xv[e] : 0.0);
          }
      CHECK(bad == 0);
    }
  CHECK(kq_identity_kernel(2, 2, 4, KqPad::left).dtype() == DType::f32);
  CHECK(kq_identity_kernel(2, 2, 3, KqPad::both, {DType::f32, kCPU, true}).requires_grad());
  CHECK_THROWS_AS(kq_identity_kernel(4, 2, 4, KqPad::both), std::invalid_argument);
}

TEST_CASE("head_mix: identity mix gives the lower triangle of x") {
  const int64_t B = 2, H = 6, T = 8;
  const Tensor x = rand_f64({B, H, T, T}, 70);
  const std::vector<double> xv = x.to_vector<double>();
  for (int64_t ch : {1, 2, 3, 6}) {
    CAPTURE(ch);
    const Tensor M = head_mix_identity(H, ch, {DType::f64});
    CHECK(M.shape() == Shape{H / ch, ch, ch});
    const std::vector<double> y = head_mix(x, M).to_vector<double>();
    int bad = 0;
    for (int64_t m = 0; m < B * H; ++m)
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j < T; ++j) {
          const int64_t e = (m * T + i) * T + j;
          bad += y[e] != (j <= i ? xv[e] : 0.0);
        }
    CHECK(bad == 0);
  }
  CHECK_THROWS_AS(head_mix_identity(6, 4), std::invalid_argument);
}
