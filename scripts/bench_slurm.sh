#!/usr/bin/env bash
# What Slurm adds to a sweep: the same sweep of tiny runs (seconds of training in all) through
# the local launcher and through `--launcher slurm` on a single-node Slurm started by
# scripts/slurm_local.sh, side by side in one run, 2 at a time both ways. Prints the
# submit-to-start latency (sbatch until the first task's run starts), the gap between a task
# ending and the next one starting in its place, the wall time of both sweeps and their
# difference per task. Needs root and the Slurm packages, like the Slurm tests.
#
#   scripts/bench_slurm.sh [BUILD_DIR] [RUNS]      (defaults: build, 8)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
runs=${2:-8}
if [[ -z ${SLURM_CONF:-} ]]; then exec scripts/slurm_local.sh run "$PWD/scripts/bench_slurm.sh" "$@"; fi
bin=$(cd "$build" && pwd)/mtalab
work=$(mktemp -d "${TMPDIR:-/tmp}/mtalab_bench_slurm.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
cat >b.ini <<EOF
[model]
d_model = 16
n_layers = 1
n_heads = 2
[task]
total_len = 24
block_len = 3
query_len = 2
n_test = 8
[train]
batch_size = 4
eval_batch_size = 8
steps = 20
threads = 1
[sweep]
out = out
seeds = $runs
EOF
# A first job warms the controller up (its first scheduling pass), as on a running cluster.
sbatch --quiet --wait --output=/dev/null --wrap true
t0=$(date +%s.%N)
OMP_NUM_THREADS=1 "$bin" sweep b.ini --sweep.out local --jobs 2 >local.txt
t1=$(date +%s.%N)
"$bin" sweep b.ini --sweep.out slurm --launcher slurm --slurm.parallel 2 --wait >slurm.txt
t2=$(date +%s.%N)
/usr/bin/python3 - "$t0" "$t1" "$t2" "$runs" <<'EOF'
import datetime, glob, re, statistics, sys
t0, t1, t2, runs = map(float, sys.argv[1:])
def when(s): return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()
submitted = min(when(l.split("\t")[2]) for l in open("slurm/slurm/jobs.tsv").read().splitlines()[1:])
spans = []
for f in glob.glob("slurm/logs/*.log"):
    text = open(f).read()
    b = re.search(r"== start \(Slurm task \S+ on \S+, restart \d+, (\S+)\)", text).group(1)
    e = re.search(r"== Slurm task \S+ \((\S+)\): finished", text).group(1)
    spans.append((when(b), when(e)))
spans.sort()
first = spans[0][0] - submitted
# A task that did not start at once took the place of the last one to end before it.
gaps = [b - max(e2 for b2, e2 in spans if e2 <= b) for b, e in spans[2:] if any(e2 <= b for _, e2 in spans)]
task = [e - b for b, e in spans]
local, slurm = t1 - t0, t2 - t1
print(f"sweep of {int(runs)} runs (20 steps each), 2 at a time:")
print(f"  local launcher    {local:6.2f} s")
print(f"  Slurm launcher    {slurm:6.2f} s (submit, run, follow with --wait)   ratio {slurm / local:.2f}")
print(f"  submit -> first task's run starts: {first:.3f} s")
if gaps:
    print(f"  a task ends -> the next starts in its place: median {statistics.median(gaps):.3f} s, max {max(gaps):.3f} s")
print(f"  a task's run (start line to end line): median {statistics.median(task):.3f} s")
print(f"  Slurm's cost per task: ({slurm:.2f} - {local:.2f}) s / {int(runs)} runs x 2 at once = {(slurm - local) / runs * 2:.3f} s")
EOF
