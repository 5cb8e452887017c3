// Device dispatch: CPU-only builds refuse cuda tensors with a clear message; builds with
// the CUDA backend round-trip tensors through GPU memory when a GPU is visible.
#include <doctest/doctest.h>

#include "autograd/backend.h"
#include "autograd/ops.h"

using namespace mtalab;

TEST_CASE("devices: cuda tensors round-trip, or fail with a message saying why") {
  Tensor a = from_vector(std::vector<float>{1.5f, -2.f, 3.25f}, {3});
  if (!cuda_backend_available()) {
    CHECK_THROWS_WITH(a.to(Device::parse("cuda:0")), doctest::Contains("cuda"));
    return;
  }
  Tensor g = a.to(Device::parse("cuda:0"));
  CHECK(g.device().str() == "cuda:0");
  CHECK_THROWS_AS(g.data<float>(), std::logic_error);  // raw memory stays inside the backend
  CHECK(g.to(DType::f64).to(kCPU).to_vector<double>() == std::vector<double>{1.5, -2, 3.25});
  CHECK(full({4}, 7.0, {DType::f32, Device::parse("cuda:0")}).to(kCPU).to_vector<float>() == std::vector<float>(4, 7.f));
  CHECK_THROWS_WITH(softmax(g), doctest::Contains("not implemented for device cuda:0"));
}
