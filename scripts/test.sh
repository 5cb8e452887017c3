#!/usr/bin/env bash
# The README's test command: installs what is missing, builds from nothing, runs every test.
#
#   scripts/test.sh            1. build/ (the CUDA backend compiled by nvcc for sm_80 and sm_90
#                                 where nvcc is installed): the whole suite; the CUDA tests run on
#                                 a GPU and are reported as skipped without one;
#                              2. build-emu/ (-DMTALAB_CUDA=EMU, the same .cu files over the CPU
#                                 emulator): the CUDA suite in forward, reverse and random thread
#                                 order;
#                              3. build-emu-asan/ (the emulated build under ASan + UBSan): the
#                                 CUDA suite once more.
#   scripts/test.sh --cpu      step 1 only.
#   scripts/test.sh --sanitize the CPU suite under ASan + UBSan, in build-asan/.
# Extra arguments go to every ctest call (e.g. -R kq_conv).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mode=all
case "${1:-}" in
  --cpu) mode=cpu; shift ;;
  --sanitize) mode=sanitize; shift ;;
esac
# Two test binaries at a time, one thread each: oversubscribed OpenMP barriers spin.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
run_ctest() {  # build dir, then ctest arguments
  local dir=$1
  shift
  (cd "$dir" && ctest --output-on-failure -j 2 "$@")
}

if [[ $mode == sanitize ]]; then
  BUILD_DIR=build-asan BUILD_TYPE=RelWithDebInfo scripts/build.sh -DMTALAB_SANITIZE=ON -DMTALAB_CUDA=OFF
  run_ctest build-asan "$@"
  exit 0
fi

echo "== build/: the whole suite"
BUILD_DIR=${BUILD_DIR:-build} scripts/build.sh
if grep -q "MTALAB_CUDA_BACKEND_BUILT:INTERNAL=nvcc" "${BUILD_DIR:-build}/CMakeCache.txt"; then
  echo "   (every cuda/*.cu compiled and linked by nvcc for sm_80 and sm_90)"
else
  echo "   (no nvcc here: the CUDA sources were not compiled for a GPU)"
fi
run_ctest "${BUILD_DIR:-build}" "$@"
[[ $mode == cpu ]] && exit 0

echo "== build-emu/: the CUDA suite on the emulator, in three thread orders"
BUILD_DIR=build-emu scripts/build.sh -DMTALAB_CUDA=EMU --target test_cuda
run_ctest build-emu -L cuda "$@"

echo "== build-emu-asan/: the CUDA suite on the emulator under ASan + UBSan"
BUILD_DIR=build-emu-asan BUILD_TYPE=RelWithDebInfo scripts/build.sh -DMTALAB_CUDA=EMU -DMTALAB_SANITIZE=ON \
  --target test_cuda
run_ctest build-emu-asan -L cuda_forward "$@"
