#!/usr/bin/env bash
# Per-token generation time, incremental decoding (key/value cache; for MTA also the cached
# score and probability rows) against recomputing the whole context per token (what the
# MTA reference code does), side by side in one process per variant, at contexts 128..2048
# (bench/bench_decode.cpp): a 4-layer, d = 128, 4-head model; MTA in the paper's LM setting.
#
#   scripts/bench_decode.sh                               OMP_NUM_THREADS=1, STEPS=64
#   SAVE=bench/results/decode_cpu.txt scripts/bench_decode.sh   also writes the table there
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
STEPS=${STEPS:-64}
CONTEXTS=${CONTEXTS:-128,256,512,1024,2048}
scripts/setup.sh >/dev/null
BUILD_DIR=$BUILD_DIR scripts/build.sh --target bench_decode >/dev/null
{
  echo "# scripts/bench_decode.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), OMP_NUM_THREADS=$OMP_NUM_THREADS, mean of $STEPS cached tokens, median of 3 recomputations"
  echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($(nproc --all) CPUs); model d=128, 4 layers, 4 heads; ms per new token at each context"
  for att in softmax mta; do "$BUILD_DIR/bench_decode" --attention $att --contexts "$CONTEXTS" --steps "$STEPS"; echo; done
} | tee ${SAVE:+"$SAVE"}
