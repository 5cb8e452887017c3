#!/usr/bin/env bash
# The README's test command: installs what is missing, builds from nothing, runs every test.
# scripts/test.sh --sanitize   builds into build-asan with ASan+UBSan and runs the suite there.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [[ "${1:-}" == "--sanitize" ]]; then
  shift
  export BUILD_DIR=build-asan BUILD_TYPE=RelWithDebInfo
  export ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1
  scripts/build.sh -DMTALAB_SANITIZE=ON -DMTALAB_CUDA=OFF
else
  export BUILD_DIR=${BUILD_DIR:-build}
  scripts/build.sh
fi
cd "$BUILD_DIR"
# Two test binaries at a time, one thread each: oversubscribed OpenMP barriers spin.
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} ctest --output-on-failure -j 2 "$@"
