#!/usr/bin/env bash
# Builds bench_mta and runs it and its PyTorch counterpart (bench/bench_mta_torch.py, the
# paper's reference formulation) with the same thread count, then prints one table:
#   case, mtalab ms, torch ms, ratio torch/mtalab (medians), the same for the minima, check
# where "check" is the largest relative difference between the two programs' CHECK values
# (loss and gradient norms computed from the same deterministic inputs).
#
#   scripts/bench_mta.sh                 OMP_NUM_THREADS=2, 7 repeats, T up to 1024
#   OMP_NUM_THREADS=4 REPEATS=11 MAX_T=512 scripts/bench_mta.sh
#   SAVE=bench/results/mta_cpu.txt scripts/bench_mta.sh   also writes the table there
# BUILD_DIR (default build) is configured like scripts/build.sh; only bench_mta is built.
# Needs Debian's python3-torch (scripts/setup.sh --with-torch); runs /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
THREADS=${OMP_NUM_THREADS:-2}
REPEATS=${REPEATS:-7}
MAX_T=${MAX_T:-1024}
PY=${PYTHON:-/usr/bin/python3}

cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" --target bench_mta >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "bench_mta: running mtalab (threads=$THREADS, repeats=$REPEATS) ..." >&2
OMP_NUM_THREADS=$THREADS "$BUILD_DIR/bench_mta" "$REPEATS" "$MAX_T" >"$tmp/mtalab.txt"
echo "bench_mta: running torch ..." >&2
OMP_NUM_THREADS=$THREADS "$PY" bench/bench_mta_torch.py "$REPEATS" "$MAX_T" >"$tmp/torch.txt"

table() {
  echo "# MTA attention-map ops, CPU float32: mtalab fused kernels vs PyTorch reference formulation"
  echo "# $(date -u +%Y-%m-%dT%H:%MZ)  commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
       " cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)  nproc $(nproc)"
  grep '^#' "$tmp/mtalab.txt"
  grep '^#' "$tmp/torch.txt"
  echo "# kqconv: kq_conv forward + backward (input and kernel grads) on [1,4,T,T] maps"
  echo "# mta: whole MTA attention forward + backward (q k^T -> kq_conv -> head_mix -> causal_softmax"
  echo "#      -> kq_conv -> head_mix -> .v), Dh=32, c_h=2, pad both"
  echo "# times: median (and minimum) wall ms of $REPEATS repeats after a warm-up (>= 3 runs, >= 0.5 s); the minimum is"
  echo "#        the steadier figure when other processes share the cores"
  echo "# check: max relative difference of loss / gradient norms between the two programs"
  "$PY" - "$tmp/mtalab.txt" "$tmp/torch.txt" <<'EOF'
import sys
def load(path):
    res, chk = {}, {}
    for line in open(path):
        f = line.split()
        if not f or f[0].startswith("#"):
            continue
        if f[0] == "RESULT":
            res[" ".join(f[1:-2])] = (float(f[-2]), float(f[-1]))
        elif f[0] == "CHECK":
            chk.setdefault(" ".join(f[1:-2]), {})[f[-2]] = float(f[-1])
    return res, chk
mres, mchk = load(sys.argv[1])
tres, tchk = load(sys.argv[2])
nan = float("nan")
print(f"{'case':<22} {'mtalab ms':>10} {'torch ms':>10} {'torch/mtalab':>13}   "
      f"{'min: mtalab':>11} {'torch':>9} {'ratio':>7}  {'check':>8}")
worst = 0.0
for case, (ms, ms_min) in mres.items():
    tms, tms_min = tres.get(case, (nan, nan))
    diffs = [abs(v - tchk.get(case, {}).get(k, nan)) / max(abs(v), 1e-30)
             for k, v in mchk.get(case, {}).items()]
    d = max(diffs) if diffs else nan
    worst = max(worst, d) if d == d else float("inf")
    print(f"{case:<22} {ms:>10.2f} {tms:>10.2f} {tms / ms:>12.1f}x   "
          f"{ms_min:>11.2f} {tms_min:>9.2f} {tms_min / ms_min:>6.1f}x  {d:>8.1e}")
status = "OK" if worst < 1e-3 else "MISMATCH"
print(f"# numerical agreement: worst relative difference {worst:.1e} ({status}, tolerance 1e-3)")
EOF
}

if [[ -n "${SAVE:-}" ]]; then
  mkdir -p "$(dirname "$SAVE")"
  table | tee "$SAVE"
else
  table
fi
