#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds the CUDA backend for it, runs the CUDA test
# suite there (the same binaries the emulated build runs on the CPU), trains the toy task
# on the GPU and on the CPU side by side, and times every kernel family against cuBLAS and
# cuDNN (bench/bench_cuda.cpp, bf16 GEMMs against cublasGemmEx among them), times the 124M
# model's training step in fp32 and bf16 (bench/bench_precision.cpp: tokens/s and MFU).
# Everything it prints also goes to
# bench/results/gpu_check_<date>.txt.
#
#   scripts/gpu_check.sh            ARCH=90 (H100/H200); ARCH=80 for A100, or "native"
#   STEPS=300 scripts/gpu_check.sh  toy steps per run (default 300)
# No network is needed: it uses only what scripts/setup.sh installs and the CUDA toolkit.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${ARCH:-90}
STEPS=${STEPS:-300}
BUILD_DIR=${BUILD_DIR:-build-gpu}
mkdir -p bench/results
LOG=bench/results/gpu_check_$(date -u +%Y-%m-%d).txt
exec > >(tee "$LOG") 2>&1
echo "# scripts/gpu_check.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'nvidia-smi missing')"
scripts/setup.sh
echo "== build (sm_$ARCH)"
t0=$SECONDS
BUILD_DIR=$BUILD_DIR scripts/build.sh -DMTALAB_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCH" >/dev/null
echo "built in $((SECONDS - t0)) s"
echo "== ctest -L cuda on the GPU"
(cd "$BUILD_DIR" && OMP_NUM_THREADS=4 ctest -L cuda --output-on-failure -j 1) || echo "!! CUDA tests FAILED"
echo "== toy task: $STEPS steps, softmax and MTA, on cuda and on cpu"
BIN=$BUILD_DIR/mtalab
OUT=$(mktemp -d)
MTA="--model.attention mta --mta.kq_layers all --mta.cq 2 --mta.ck 9 --mta.kq_post false
     --mta.head_mix_pre false --mta.head_mix_post false --mta.group_norm false --mta.gate false"
for dev in cuda cpu; do
  # shellcheck disable=SC2086
  "$BIN" train --config experiments/configs/toy_find_block.ini --train.steps "$STEPS" --train.device $dev \
    --train.log_every 100 --model.attention softmax --run.out "$OUT/softmax_$dev" --overwrite | tail -2
  # shellcheck disable=SC2086
  "$BIN" train --config experiments/configs/toy_find_block.ini --train.steps "$STEPS" --train.device $dev \
    --train.log_every 100 $MTA --run.out "$OUT/mta_$dev" --overwrite | tail -2
done
"$BIN" report "$OUT"/*/run.h5
echo "== tensor-core attention: what nvcc made of it (mma.sync, ldmatrix, cp.async; registers, smem, spills)"
python3 scripts/check_tensor_cores.py --nvcc "${CUDACXX:-/usr/local/cuda/bin/nvcc}" --work-dir "$OUT/ptx" | tail -40 ||
  echo "!! tensor-core PTX check FAILED"
echo "== kernel families vs cuBLAS / cuDNN (attention on tensor cores: TFLOP/s and % of the bf16 peak)"
"$BUILD_DIR/bench_cuda" --repeats 20
echo "== mixed precision: the 124M GPT-2-sized model (d=768, 12 layers, 12 heads, T=1024, B=8), fp32 vs bf16 step"
for att in softmax mta; do
  timeout 180 "$BUILD_DIR/bench_precision" --device cuda --attention $att --d 768 --layers 12 --heads 12 --seq 1024 \
    --batch 8 --steps 5 || echo "RESULT bench_precision $att failed or timed out (exit $?)"
done
echo "== fused attention vs the map ops on the GPU: a training step, d=256, 4 layers, 4 heads, 16384 tokens"
for T in 1024 2048 4096 8192; do
  for att in softmax mta; do
    for impl in fused maps; do
      timeout 60 "$BUILD_DIR/bench_attention" --device cuda --attention $att --impl $impl --seq $T --tokens 16384 \
        --steps 3 || echo "RESULT $att $impl T=$T failed or timed out (exit $?)"
    done
  done
done
echo "== done: $LOG"
