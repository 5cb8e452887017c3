// Test main of the CUDA suite: without a usable device (no GPU, or a build without the
// CUDA backend) it exits with 77, which ctest reports as skipped. --emu-order=ORDER picks
// the emulated build's thread order (as MTALAB_EMU_ORDER does).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "autograd/backend.h"

int main(int argc, char** argv) {
  std::vector<char*> args;
  bool listing = false;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--emu-order=", 0) == 0) {
      setenv("MTALAB_EMU_ORDER", a.substr(12).c_str(), 1);
      continue;
    }
    if (a.find("list-test") != std::string::npos || a.find("-ltc") != std::string::npos || a == "--help" ||
        a == "-h")
      listing = true;
    args.push_back(argv[i]);
  }
  if (!listing && !mtalab::cuda_backend_available()) {
    std::printf("skipping the CUDA tests: %s\n", mtalab::cuda_backend_unavailable_reason().c_str());
    return 77;
  }
  doctest::Context ctx((int)args.size(), args.data());
  return ctx.run();
}
