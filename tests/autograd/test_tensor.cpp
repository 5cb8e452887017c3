// Tensors: views share storage, conversions, printing, creation, seeded random streams.
#include <doctest/doctest.h>


#include "autograd/ops.h"

using namespace mtalab;

TEST_CASE("tensor: views share storage; reshape of a contiguous tensor copies nothing") {
  Tensor a = arange(12, {DType::f32}).reshape({3, 4});
  Tensor v = a.reshape({4, 3});
  CHECK((v.storage() == a.storage()));
  Tensor t = a.transpose(0, 1);
  CHECK((t.storage() == a.storage()));
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.shape() == Shape{4, 3});
  CHECK(t.to_vector<float>()[1] == 4.0f);
  Tensor s = a.slice(1, 1, 3);
  CHECK((s.storage() == a.storage()));
  CHECK(s.to_vector<float>() == std::vector<float>{1, 2, 5, 6, 9, 10});
  Tensor c = t.contiguous();
  CHECK((c.storage() != a.storage()));
  CHECK(c.is_contiguous());
  CHECK_THROWS_WITH_AS(t.view({12}), doctest::Contains("not contiguous"), std::invalid_argument);
  CHECK(a.expand({2, 3, 4}).strides()[0] == 0);
  CHECK(a.unsqueeze(0).shape() == Shape{1, 3, 4});
  CHECK(a.unsqueeze(-1).squeeze(-1).shape() == Shape{3, 4});
}

TEST_CASE("tensor: dtype conversion, item, printing, devices") {
  Tensor a = from_vector(std::vector<double>{1.5, -2.25}, {2});
  CHECK(a.to(DType::f32).dtype() == DType::f32);
  CHECK(a.to(DType::i32).to_vector<int32_t>() == std::vector<int32_t>{1, -2});
  CHECK(sum(a).item() == -0.75);
  CHECK_THROWS_WITH_AS(a.item(), doctest::Contains("has 2 elements"), std::invalid_argument);
  const std::string s = a.str();
  CHECK(s.find("1.5") != std::string::npos);
  CHECK(s.find("shape=[2]") != std::string::npos);
  CHECK(s.find("float64") != std::string::npos);
  CHECK(a.to(kCPU).same(a));
  CHECK(Device::parse("cuda:1").index == 1);
  CHECK_THROWS_WITH_AS(Device::parse("tpu"), doctest::Contains("unknown device 'tpu'"), std::invalid_argument);
  CHECK_THROWS_AS(a.data<float>(), std::invalid_argument);
}

TEST_CASE("tensor: creation") {
  CHECK(zeros({2, 3}).to_vector<float>() == std::vector<float>(6, 0.0f));
  CHECK(full({2}, 7, {DType::i64}).to_vector<int64_t>() == std::vector<int64_t>{7, 7});
  CHECK(arange(4, {DType::f64}).to_vector<double>() == std::vector<double>{0, 1, 2, 3});
  CHECK_THROWS_AS(from_vector(std::vector<float>{1, 2, 3}, {2, 2}), std::invalid_argument);
}

TEST_CASE("random: seeded streams do not depend on the thread count") {
  const int saved = get_num_threads();
  auto draw = [](int threads) {
    set_num_threads(threads);
    Generator g(2024);
    Tensor a = randn({100003}, g, {DType::f64});
    Tensor b = uniform({77}, -1, 1, g, {DType::f32});
    Tensor c = trunc_normal({5000}, 0.02, 3.0, g, {DType::f64});
    return std::make_tuple(a.to_vector<double>(), b.to_vector<float>(), c.to_vector<double>());
  };
  auto one = draw(1), two = draw(2), four = draw(4);
  set_num_threads(saved);
  CHECK(one == two);
  CHECK(one == four);
  // and the streams look like what they claim to be
  const auto& n = std::get<0>(one);
  double m = 0, v = 0;
  for (double x : n) m += x;
  m /= n.size();
  for (double x : n) v += (x - m) * (x - m);
  v /= n.size();
  CHECK(std::abs(m) < 0.02);
  CHECK(std::abs(v - 1) < 0.02);
  for (double x : std::get<2>(one)) CHECK(std::abs(x) <= 0.06 + 1e-12);
  Generator g1(1), g2(2);
  CHECK(randn({8}, g1).to_vector<float>() != randn({8}, g2).to_vector<float>());
}

TEST_CASE("random: a generator's state resumes the stream exactly") {
  Generator g(9);
  randn({13}, g);
  PhiloxState st = g.state();
  auto a = rand({10}, g).to_vector<float>();
  Generator h(0);
  h.set_state(st);
  CHECK(rand({10}, h).to_vector<float>() == a);
}
