#!/usr/bin/env bash
# Mixed precision (--train.precision bf16) against float32 on this machine, side by side in
# one process per configuration (bench/bench_precision.cpp: the two precisions' training
# steps alternate): the toy configuration (d=128, 4 layers, 2 heads, T=64, B=32) and a
# language-model one (d=256, 4 layers, 4 heads, T=256, B=8), softmax and MTA (the paper's
# LM setting), on 1 and 2 threads.
#
#   scripts/bench_precision.sh                                       prints the results
#   SAVE=bench/results/precision_cpu.txt scripts/bench_precision.sh  also writes them there
#   DEVICE=cuda scripts/bench_precision.sh                           the same on a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
DEVICE=${DEVICE:-cpu}
STEPS=${STEPS:-5}
scripts/setup.sh >/dev/null
BUILD_DIR=$BUILD_DIR scripts/build.sh --target bench_precision >/dev/null
{
  echo "# scripts/bench_precision.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), device $DEVICE, median of $STEPS steps each"
  echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($(nproc --all) CPUs); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  for threads in 1 2; do
    for att in softmax mta; do
      echo "## OMP_NUM_THREADS=$threads $att toy: d=128 layers=4 heads=2 T=64 B=32"
      OMP_NUM_THREADS=$threads "$BUILD_DIR/bench_precision" --device "$DEVICE" --attention $att --d 128 --layers 4 \
        --heads 2 --seq 64 --batch 32 --steps "$STEPS" | grep 'step'
      echo "## OMP_NUM_THREADS=$threads $att LM: d=256 layers=4 heads=4 T=256 B=8"
      OMP_NUM_THREADS=$threads "$BUILD_DIR/bench_precision" --device "$DEVICE" --attention $att --d 256 --layers 4 \
        --heads 4 --seq 256 --batch 8 --steps "$STEPS"
    done
  done
  echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg) (the two precisions alternate step by step, so load slows both alike)"
} | tee ${SAVE:+"$SAVE"}
