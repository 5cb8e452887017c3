#!/usr/bin/env bash
# Training-step time and peak memory of fused attention vs the map ops vs PyTorch eager (the
# MTA reference code's formulation), side by side in one run: a 4-layer, d=256, 4-head
# model at T = 256, 1024, 2048, 4096 with a fixed number of tokens per step, softmax and
# MTA (the paper's LM setting). Every configuration runs in its own process (bench/
# bench_attention.cpp, bench/bench_attention_torch.py), so each peak is its own.
#
#   scripts/bench_attention.sh                     OMP_NUM_THREADS=2, TOKENS=8192, STEPS=3
#   SEQS="256 1024" TORCH=0 scripts/bench_attention.sh
#   SAVE=bench/results/attention_cpu.txt scripts/bench_attention.sh   also writes the table there
# Needs Debian's python3-torch for the PyTorch column (scripts/setup.sh --with-torch).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
TOKENS=${TOKENS:-8192}
STEPS=${STEPS:-3}
SEQS=${SEQS:-"256 1024 2048 4096"}
TORCH=${TORCH:-1}
PY=${PYTHON:-/usr/bin/python3}
scripts/setup.sh $([[ $TORCH == 1 ]] && echo --with-torch) >/dev/null
BUILD_DIR=$BUILD_DIR scripts/build.sh --target bench_attention >/dev/null
out=$(mktemp)
for T in $SEQS; do
  for att in softmax mta; do
    for impl in fused maps; do
      "$BUILD_DIR/bench_attention" --attention $att --impl $impl --seq "$T" --tokens "$TOKENS" --steps "$STEPS" |
        tee -a "$out"
    done
    if [[ $TORCH == 1 ]]; then "$PY" bench/bench_attention_torch.py $att "$T" "$TOKENS" "$STEPS" | tee -a "$out"; fi
  done
done
table=$(python3 - "$out" <<'PYEOF'
import sys, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    if not line.startswith("RESULT"): continue
    f = line.split()
    kv = dict(x.split("=", 1) for x in f[3:])
    rows[(f[1], f[2], int(kv["T"]))] = kv
def get(a, i, T, k):
    r = rows.get((a, i, T)); return float(r[k]) if r and r[k] != "-" else None
def fmt(x, spec): return format(x, spec) if x is not None else "-"
Ts = sorted({k[2] for k in rows})
print(f"{'attention':9} {'T':>5} {'B':>3} {'fused_ms':>9} {'maps_ms':>9} {'torch_ms':>9} {'maps/fused':>10} {'torch/fused':>11} "
      f"{'fused_rss':>9} {'maps_rss':>9} {'torch_rss':>9}  (RSS in MiB)")
for T in Ts:
    for a in ("softmax", "mta"):
        f, m, t = (get(a, i, T, "ms") for i in ("fused", "maps", "torch"))
        B = rows.get((a, "fused", T), {}).get("B", "-")
        fr, mr, tr = (get(a, i, T, "max_rss_mib") for i in ("fused", "maps", "torch"))
        print(f"{a:9} {T:5} {B:>3} {fmt(f,'9.0f')} {fmt(m,'9.0f')} {fmt(t,'9.0f')} {fmt(m/f if f and m else None,'10.2f')} "
              f"{fmt(t/f if f and t else None,'11.2f')} {fmt(fr,'9.0f')} {fmt(mr,'9.0f')} {fmt(tr,'9.0f')}")
print()
for T in Ts:
    s, m = get("softmax", "fused", T, "ms"), get("mta", "fused", T, "ms")
    sr, mr = get("softmax", "fused", T, "max_rss_mib"), get("mta", "fused", T, "max_rss_mib")
    if s and m: print(f"T={T}: fused MTA step / fused softmax step = {m/s:.2f} (target at 2048: <= 1.3); "
                      f"MTA peak RSS / softmax peak RSS = {mr/sr:.2f} (target at 4096: <= 1.5)")
PYEOF
)
{
  echo "# scripts/bench_attention.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), OMP_NUM_THREADS=$OMP_NUM_THREADS, tokens/step $TOKENS, median of $STEPS steps after one warm-up"
  echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($(nproc) CPUs); model d=256, 4 layers, 4 heads; MTA = the paper's LM setting (kq 6x11 pre+post in layer 2, mixing pre+post in every layer, group norm + gate)"
  echo "$table"
} | tee ${SAVE:+"$SAVE"}
