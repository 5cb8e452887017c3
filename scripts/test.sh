#!/usr/bin/env bash
# The README's test command: installs what is missing, builds from nothing, runs every test.
#
#   scripts/test.sh            1. build/: the whole suite. Without a visible GPU the CUDA
#                                 backend is the emulated one (-DMTALAB_CUDA=EMU: the same .cu
#                                 files over the CPU emulator), and the CUDA suite runs in
#                                 forward, reverse and random thread order; where nvcc is
#                                 installed the same build also compiles and links every .cu
#                                 with nvcc for sm_80 and sm_90. With a GPU, build/ is the real
#                                 backend and the CUDA suite runs on the GPU.
#                              2. build-emu-asan/: the emulated CUDA suite once more, under
#                                 AddressSanitizer + UBSan.
#   scripts/test.sh --cpu      step 1 without the CUDA suite.
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
# Sanitized builds at -O1 -g1: line numbers in the reports, a quarter of -O2 -g's compile time.
SAN_FLAGS=(-DMTALAB_SANITIZE=ON -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG")
run_ctest() {  # build dir, then ctest arguments
  local dir=$1
  shift
  (cd "$dir" && ctest --output-on-failure -j 2 "$@")
}

if [[ $mode == sanitize ]]; then
  BUILD_DIR=build-asan BUILD_TYPE=RelWithDebInfo scripts/build.sh "${SAN_FLAGS[@]}" -DMTALAB_CUDA=OFF
  run_ctest build-asan "$@"
  exit 0
fi

BUILD_DIR=${BUILD_DIR:-build}
if nvidia-smi -L >/dev/null 2>&1; then cuda=AUTO; else cuda=EMU; fi
echo "== $BUILD_DIR/: the whole suite (CUDA backend: $([[ $cuda == EMU ]] && echo "emulated, no GPU visible" || echo "the GPU"))"
BUILD_DIR=$BUILD_DIR scripts/build.sh -DMTALAB_CUDA=$cuda
case "$(sed -n 's/^MTALAB_CUDA_BACKEND_BUILT:INTERNAL=//p' "$BUILD_DIR/CMakeCache.txt")" in
  nvcc) echo "   (every cuda/*.cu compiled by nvcc for sm_80 and sm_90: the CUDA tests run on the GPU)" ;;
  emu) if [[ -e $BUILD_DIR/libmtalab_cuda_nvcc_check.so ]]; then
         echo "   (and every cuda/*.cu compiled and linked by nvcc for sm_80 and sm_90)"
       else
         echo "   (no nvcc here: the CUDA sources were not compiled for a GPU)"
       fi ;;
esac
if [[ $mode == cpu ]]; then
  run_ctest "$BUILD_DIR" -LE cuda "$@"
  exit 0
fi
run_ctest "$BUILD_DIR" "$@"

echo "== build-emu-asan/: the CUDA suite on the emulator under ASan + UBSan"
BUILD_DIR=build-emu-asan BUILD_TYPE=RelWithDebInfo scripts/build.sh "${SAN_FLAGS[@]}" -DMTALAB_CUDA=EMU \
  -DMTALAB_NVCC_CHECK=OFF --target test_cuda
run_ctest build-emu-asan -L cuda_forward "$@"
