#!/usr/bin/env bash
# Configures and builds mtalab into ${BUILD_DIR:-build}. Arguments starting with -D go to
# cmake; `--target T` builds only T (and what it needs).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
defs=()
targets=()
while (($#)); do
  case "$1" in
    --target) targets+=(--target "$2"); shift 2 ;;
    *) defs+=("$1"); shift ;;
  esac
done
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" "${defs[@]}" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" "${targets[@]}"
