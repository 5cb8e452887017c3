// The MPI tests start `mpirun -np 2 build/mtalab train ...`. Without mpirun, or in a build
// without MPI, they are skipped: exit 77, which ctest reports as skipped.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--list", 6) == 0 || std::strncmp(argv[i], "-l", 2) == 0) listing = true;
  if (!listing) {
#ifndef MTALAB_TEST_HAVE_MPI
    std::puts("skipped: this build has no MPI (install libopenmpi-dev openmpi-bin: scripts/setup.sh)");
    return 77;
#endif
    if (std::system("command -v mpirun >/dev/null 2>&1") != 0) {
      std::puts("skipped: no mpirun on PATH (install openmpi-bin: scripts/setup.sh)");
      return 77;
    }
  }
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
