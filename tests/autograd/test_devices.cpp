// Device dispatch: builds without a usable CUDA device refuse cuda tensors with a message
// saying why; with one (a GPU, or the emulated build) tensors round-trip through device
// memory, stay out of reach of host code, and ops run there. (The kernels themselves are
// checked by tests/cuda.)
#include <doctest/doctest.h>

#include "autograd/backend.h"
#include "autograd/ops.h"

using namespace mtalab;

TEST_CASE("devices: cuda tensors round-trip, or fail with a message saying why") {
  Tensor a = from_vector(std::vector<float>{1.5f, -2.f, 3.25f}, {3});
  if (!cuda_backend_available()) {
    CHECK_THROWS_WITH(a.to(Device::parse("cuda:0")), doctest::Contains("cuda"));
    CHECK(std::string(cuda_backend_kind()) != "emulated");
    return;
  }
  Tensor g = a.to(Device::parse("cuda:0"));
  CHECK(g.device().str() == "cuda:0");
  CHECK_THROWS_AS(g.data<float>(), std::logic_error);  // raw memory stays inside the backend
  CHECK(g.to(DType::f64).to(kCPU).to_vector<double>() == std::vector<double>{1.5, -2, 3.25});
  CHECK(full({4}, 7.0, {DType::f32, Device::parse("cuda:0")}).to(kCPU).to_vector<float>() == std::vector<float>(4, 7.f));
  CHECK(softmax(g).to(kCPU).to_vector<float>() == softmax(a).to_vector<float>());
  CHECK_THROWS_WITH(add(a, g), doctest::Contains("device mismatch"));
  CHECK(!cuda_device_name(0).empty());
}

TEST_CASE("devices: parse names, and refuse what is not a device") {
  CHECK(Device::parse("cpu").is_cpu());
  CHECK(Device::parse("cuda:3").index == 3);
  CHECK_THROWS_WITH(Device::parse("gpu"), doctest::Contains("expected cpu, cuda or cuda:N"));
  CHECK_THROWS_AS(Device::parse("cuda:x"), std::invalid_argument);
}
