#!/usr/bin/env bash
# `srun --mpi=pmix -n 2 mtalab train` under a real single-node Slurm (scripts/slurm_local.sh)
# gives the bits of one process with grad_accum 2, and the log says srun started it.
# Usage: tests/mpi/srun_check.sh BUILD_DIR. Exit 77 (skipped) without Slurm, root or srun.
set -euo pipefail
bin=$(cd "$1" && pwd)/mtalab
here=$(cd "$(dirname "$0")/../.." && pwd)
command -v srun >/dev/null && command -v h5dump >/dev/null || { echo "skipped: no srun or h5dump"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
opts="--model.d_model 16 --model.n_layers 1 --model.n_heads 2 --task.total_len 24 --task.block_len 3
      --task.query_len 2 --task.n_test 8 --train.batch_size 4 --train.eval_batch_size 8 --model.dropout 0.1
      --train.threads 1 --train.steps 4 --quiet"
"$bin" train $opts --train.grad_accum 2 --run.out one
rc=0
# srun under its own time limit (well inside ctest's 300 s): if it waits forever (a node Slurm
# cannot fill), it ends and slurm_local.sh's EXIT trap still stops the daemons; a timeout from
# ctest would kill this script only and leave them running.
"$here/scripts/slurm_local.sh" run timeout 120 srun --mpi=pmix -n 2 "$bin" train $opts --run.out two || rc=$?
[[ $rc == 77 ]] && exit 77
[[ $rc == 0 ]] || { echo "FAIL: srun exited $rc"; exit 1; }
# A failed launch can look like success (shared/design/slurm-local.md): check what it wrote.
for g in /params /optim; do
  cmp <(h5dump -m %.17g -g $g one/checkpoint.h5 | tail -n +2) <(h5dump -m %.17g -g $g two/checkpoint.h5 | tail -n +2) \
    || { echo "FAIL: $g differs between srun -n 2 and one process with grad_accum 2"; exit 1; }
done
h5dump -a world_size two/run.h5 | grep -q '(0): 2$' || { echo "FAIL: world_size is not 2"; exit 1; }
h5dump -a launcher two/run.h5 | grep -q '"srun/pmix"' || { echo "FAIL: launcher is not srun/pmix"; exit 1; }
echo "srun --mpi=pmix -n 2: the same parameters and optimizer state as one process with grad_accum 2"
