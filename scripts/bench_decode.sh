#!/usr/bin/env bash
# Per-token generation time, incremental decoding (key/value cache; for MTA also the cached
# score and probability rows) against recomputing the whole context per token (what the
# MTA reference code does), and MTA's generation speed against softmax's, side by side in one
# process, at contexts 512..4096 (bench/bench_decode.cpp): a 4-layer, d = 128, 4-head model;
# MTA in the paper's LM setting.
#
#   scripts/bench_decode.sh                               OMP_NUM_THREADS=1, STEPS=64
#   SAVE=bench/results/decode_cpu.txt scripts/bench_decode.sh   also writes the table there
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
STEPS=${STEPS:-64}
CONTEXTS=${CONTEXTS:-512,1024,2048,4096}
scripts/setup.sh >/dev/null
BUILD_DIR=$BUILD_DIR scripts/build.sh --target bench_decode >/dev/null
{
  echo "# scripts/bench_decode.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), OMP_NUM_THREADS=$OMP_NUM_THREADS, mean of $STEPS cached tokens, median of 3 recomputations"
  echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($(nproc --all) CPUs); model d=128, 4 layers, 4 heads; ms per new token at each context"
  "$BUILD_DIR/bench_decode" --attention softmax,mta --contexts "$CONTEXTS" --steps "$STEPS"
} | tee ${SAVE:+"$SAVE"}
