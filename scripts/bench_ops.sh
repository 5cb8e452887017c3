#!/usr/bin/env bash
# Builds bench/bench_ops.cpp and runs it against its PyTorch twin (bench/bench_ops_torch.py,
# Debian's torch 1.13 via /usr/bin/python3) with the same thread count, then prints
#   case  mtalab_ms  torch_ms  ratio (torch/mtalab; > 1: mtalab faster)
#
#   scripts/bench_ops.sh [--save FILE] [--no-build] [--filter SUBSTR]
#
# Environment: OMP_NUM_THREADS (default 2), ROUNDS (default 5), MIN_TIME (seconds of timed
# calls per case and round, default 0.4), BUILD_DIR (default build-bench), KEEP_RAW (a
# directory to keep every round's raw output in).
#
# Noise handling: each program reports a per-case median over its timed calls; the two
# programs run alternately ROUNDS times (mtalab first in odd rounds, torch first in even
# ones), and the table shows, per side, the best (lowest) of the round medians, which
# discards rounds disturbed by other load on the machine. "spread" is the largest
# max/min ratio of the round medians of either side; a case marked "~" (spread > 1.25)
# was disturbed and its ratio should be read with care. About 4 minutes with the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

save="" build=1 filter=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --save) save="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --filter) filter="$2"; shift 2 ;;
    *) echo "usage: $0 [--save FILE] [--no-build] [--filter SUBSTR]" >&2; exit 2 ;;
  esac
done

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
ROUNDS=${ROUNDS:-5}
MIN_TIME=${MIN_TIME:-0.4}
BUILD_DIR=${BUILD_DIR:-build-bench}
TORCH_PY=/usr/bin/python3  # the python3 on PATH has no torch

if [[ $build == 1 ]]; then
  cmake -S . -B "$BUILD_DIR" -DMTALAB_CUDA=OFF >/dev/null
  cmake --build "$BUILD_DIR" -j "$(nproc)" --target bench_ops >/dev/null
fi
BIN="$BUILD_DIR/bench_ops"
[[ -x $BIN ]] || { echo "bench_ops: $BIN not built" >&2; exit 1; }
"$TORCH_PY" -c "import torch" 2>/dev/null || { echo "bench_ops: $TORCH_PY has no torch" >&2; exit 1; }

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
tmp=$(mktemp -d)
trap '[[ -n ${KEEP_RAW:-} ]] && cp -r "$tmp" "$KEEP_RAW"; rm -rf "$tmp"' EXIT
args=(--threads "$OMP_NUM_THREADS" --min-time "$MIN_TIME")
[[ -n $filter ]] && args+=(--filter "$filter")
run_m() { "$BIN" "${args[@]}" >"$tmp/m$1.txt"; }
run_t() { "$TORCH_PY" bench/bench_ops_torch.py "${args[@]}" >"$tmp/t$1.txt"; }
for ((r = 1; r <= ROUNDS; ++r)); do
  echo "round $r/$ROUNDS ..." >&2
  if ((r % 2)); then run_m "$r"; run_t "$r"; else run_t "$r"; run_m "$r"; fi
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: *//')
torch_ver=$("$TORCH_PY" -c 'import torch; print(torch.__version__)')
{
  echo "# mtalab vs PyTorch $torch_ver, CPU ops, float32"
  echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "# cpu: $cpu ($(nproc) logical CPUs visible; $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx2|fma|avx512f' | sort | tr '\n' ' ')flags)"
  echo "# threads: OMP_NUM_THREADS=$OMP_NUM_THREADS (torch.set_num_threads($OMP_NUM_THREADS))"
  echo "# rounds: $ROUNDS alternating, min_time ${MIN_TIME}s per case and round; ms = best round median"
  echo "# load average (1/5/15 min) before: $load_start, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# mtalab commit: $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown) (plus uncommitted changes, if any)"
  "$TORCH_PY" - "$tmp" "$ROUNDS" <<'EOF'
import sys, os
d, rounds = sys.argv[1], int(sys.argv[2])
def load(prefix):
    per = {}
    order = []
    for r in range(1, rounds + 1):
        for line in open(os.path.join(d, f"{prefix}{r}.txt")):
            p = line.split()
            if len(p) >= 3 and p[0] == "BENCH":
                if p[1] not in per:
                    per[p[1]] = []
                    order.append(p[1])
                per[p[1]].append(float(p[2]))
    return per, order
m, order = load("m")
t, _ = load("t")
w = max([len(n) for n in order] + [4])
print(f"{'case':<{w}}  {'mtalab_ms':>10}  {'torch_ms':>10}  {'ratio':>6}  spread")
for n in order:
    mb = min(m[n])
    ms = max(m[n]) / mb
    if n in t:
        tb = min(t[n])
        sp = max(ms, max(t[n]) / tb)
        flag = " ~" if sp > 1.25 else ""
        print(f"{n:<{w}}  {mb:>10.3f}  {tb:>10.3f}  {tb / mb:>6.2f}  {sp:5.2f}{flag}")
    else:
        print(f"{n:<{w}}  {mb:>10.3f}  {'-':>10}  {'-':>6}  {ms:5.2f}")
EOF
} | if [[ -n $save ]]; then mkdir -p "$(dirname "$save")" && tee "$save"; else cat; fi
