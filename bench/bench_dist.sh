#!/usr/bin/env bash
# Data parallelism on the CPU: 2 ranks x 1 thread (mpirun -np 2, grad_accum 1 each) against
# 1 process x 2 threads (grad_accum 2): the same global batch
# for the toy task and a KJV language model (tests/mpi checks the bits; with the same threads
# per process, as the bits of a sum depend on how threads split it). Reports tokens/s of each, their ratio, and the
# share of the 2-rank step time spent in the ordered gradient sum (dist/ordered_sum.h:
# waiting for the other rank included), with the sum per bucket overlapped with backward
# (--train.overlap_reduce true, the default; dist/bucketed_sum.h) and in one exchange after
# backward (false). Runs the three alternately, REPEATS times each.
#
# Usage: bench/bench_dist.sh [build dir] > bench/results/dist_cpu.txt
#   STEPS (default 40), REPEATS (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
BIN=$BUILD/mtalab
STEPS=${STEPS:-40}
REPEATS=${REPEATS:-2}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
unset OMP_NUM_THREADS
# Idle OpenMP threads sleep instead of spinning: on a shared, oversubscribed machine a
# spinning barrier made the 2-thread process 5-30x slower than it is (measured here).
export OMP_WAIT_POLICY=PASSIVE
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

toy="--data.task find_block --model.d_model 128 --model.n_heads 2 --model.n_layers 4 --task.total_len 64
     --task.block_len 5 --task.query_len 2 --task.n_test 64 --train.batch_size 16"
lm="--data.task text --model.d_model 128 --model.n_heads 4 --model.n_layers 4 --data.seq_len 128
    --train.batch_size 8 --train.eval_max_batches 2"
common="--train.steps $STEPS --train.log_every $((STEPS / 2)) --train.eval_every $STEPS --train.eval_batch_size 16"

# tokens/s of the second half of the run (the last progress line: no startup, no evaluation)
tps() { grep "^step $STEPS/" "$1" | sed 's/.*| \([0-9]*\) tok\/s.*/\1/'; }

echo "# bench/bench_dist.sh, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, commit $(git rev-parse --short HEAD)"
echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg) (a shared machine: other sessions' jobs run meanwhile)"
echo "# $(mpirun --version | head -1); $STEPS steps, $REPEATS alternating repeats each; tok/s of the last $((STEPS / 2)) steps"
printf "%-5s %-26s %10s %10s %14s\n" config run "tok/s" "vs 1x2" "reduce share"
for name in toy lm; do
  opts=${!name}
  for rep in $(seq "$REPEATS"); do
    one=$work/$name-one-$rep two=$work/$name-two-$rep
    $BIN train $opts $common --train.threads 2 --train.grad_accum 2 --run.out "$one" > "$one.out"
    t1=$(tps "$one.out")
    printf "%-5s %-26s %10s %10s %14s\n" $name "1 process x 2 threads" "$t1" "1.00" "-"
    for overlap in true false; do
      mpirun -np 2 --mca btl self,vader --bind-to core $BIN train $opts $common --train.threads 1 \
        --train.grad_accum 1 --train.overlap_reduce $overlap --run.out "$two-$overlap" > "$two-$overlap.out"
      t2=$(tps "$two-$overlap.out")
      share=$(sed -n 's/.*exchanging gradients took \([0-9.]*%\).*/\1/p' "$two-$overlap.out")
      printf "%-5s %-26s %10s %10s %14s\n" $name "2 ranks x 1 thread, $([ $overlap = true ] && echo overlap || echo after)" \
        "$t2" "$(awk -v a="$t2" -v b="$t1" 'BEGIN{printf "%.2f", a/b}')" "$share"
    done
  done
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
# Why the sum is not MPI_Allreduce: its bits against the rank-order sum, 4 and 2 ranks.
mpicc -O2 -o "$work/allreduce_order" bench/allreduce_order.c
for n in 4 2; do
  mpirun -np $n --oversubscribe --mca btl self,vader "$work/allreduce_order" | sed 's/^/# /'
done
echo "# toy: $(echo $toy)"
echo "# lm:  $(echo $lm)"
echo "# both: $common"
