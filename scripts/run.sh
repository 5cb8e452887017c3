#!/usr/bin/env bash
# The README's main job: installs what is missing, builds, then trains softmax attention
# and Multi-Token Attention on the paper's find-the-block task and prints a results
# table and figures. Logs and checkpoints land in runs/toy/<variant>/ (run.h5, checkpoint.h5),
# the figures in runs/toy/plots/ (index.html).
# Extra arguments go to both runs (e.g. --train.steps 300 for a quick look).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== building into ${BUILD_DIR:-build} (a few minutes from nothing)"
BUILD_DIR=${BUILD_DIR:-build} scripts/build.sh >/dev/null
BIN=${BUILD_DIR:-build}/mtalab
OUT=${OUT:-runs/toy}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
CONFIG=experiments/configs/toy_find_block.ini
# The paper's toy MTA setting: kq-conv 2x9 pre-softmax in every layer, nothing else.
MTA="--model.attention mta --mta.kq_layers all --mta.cq 2 --mta.ck 9 --mta.kq_post false
     --mta.head_mix_pre false --mta.head_mix_post false --mta.group_norm false --mta.gate false"
echo "== softmax attention (baseline)"
"$BIN" train --config "$CONFIG" --model.attention softmax --run.out "$OUT/softmax" --overwrite "$@"
echo "== multi-token attention"
# shellcheck disable=SC2086
"$BIN" train --config "$CONFIG" $MTA --run.out "$OUT/mta" --overwrite "$@"
echo
"$BIN" report "$OUT/softmax/run.h5" "$OUT/mta/run.h5" | tee "$OUT/results.txt"
"$BIN" plot "$OUT/softmax" "$OUT/mta" --out "$OUT/plots" --title "softmax vs MTA on find-the-block" >/dev/null
echo "logs: $OUT/*/run.h5 (open with h5py or h5dump); table: $OUT/results.txt; figures: $OUT/plots/index.html"
