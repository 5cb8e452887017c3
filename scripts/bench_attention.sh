#!/usr/bin/env bash
# Training-step time and peak memory of fused attention vs the map ops vs PyTorch eager (the
# MTA reference code's formulation), side by side in one run: a Llama-style model (RMSNorm,
# RoPE, SwiGLU, tied output, AdamW, clipping) at each shape of SHAPES, softmax and MTA (the
# paper's LM setting), on each thread count of THREADS. Every configuration runs in its own
# process (bench/bench_attention.cpp, bench/bench_attention_torch.py), so each peak is its
# own. The machine may be shared: ROUNDS rounds run every configuration in turn
# (interleaved, so a burst of load hits all columns alike) and the table takes, per
# configuration, the fastest step over all rounds.
#
#   scripts/bench_attention.sh                       THREADS="1 2", ROUNDS=3, the shapes below
#   SHAPES="256:4:4:2048:4:3" THREADS=2 ROUNDS=1 scripts/bench_attention.sh
#   ATTN=softmax TORCH=0 scripts/bench_attention.sh
#   SAVE=bench/results/attention_cpu.txt scripts/bench_attention.sh   also writes the table there
#   BASE=/path/to/other/checkout/build scripts/bench_attention.sh     adds that build's fused step
#                                          (a before/after comparison, interleaved like the rest)
# A shape is d_model:layers:heads:T:B:steps (steps timed after one warm-up). The defaults:
# the toy "find the block" task (experiments/configs/toy_find_block.ini: d 128, 4 layers,
# 2 heads, T 64, batch 32), d 128 at T 256, d 256 at T 64 and 256 (batch 32). The
# paper-like d 256 model at longer sequences, 8192 tokens a step (bench/results/
# attention_cpu.txt), e.g. SHAPES="256:4:4:1024:8:3 256:4:4:2048:4:3", takes minutes per
# PyTorch MTA step.
# Needs Debian's python3-torch for the PyTorch column (scripts/setup.sh --with-torch).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
THREADS=${THREADS:-"1 2"}
ROUNDS=${ROUNDS:-3}
SHAPES=${SHAPES:-"128:4:2:64:32:10 128:4:2:256:32:4 256:4:4:64:32:6 256:4:4:256:32:3"}
ATTN=${ATTN:-"softmax mta"}
IMPLS=${IMPLS:-"fused maps"}
TORCH=${TORCH:-1}
PY=${PYTHON:-/usr/bin/python3}
scripts/setup.sh $([[ $TORCH == 1 ]] && echo --with-torch) >/dev/null
BUILD_DIR=$BUILD_DIR scripts/build.sh --target bench_attention >/dev/null
out=$(mktemp)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$ROUNDS"); do
  for th in $THREADS; do
    for sh in $SHAPES; do
      IFS=: read -r d L H T B S <<<"$sh"
      for att in $ATTN; do
        for impl in $IMPLS; do
          echo "threads=$th round=$r $(OMP_NUM_THREADS=$th "$BUILD_DIR/bench_attention" --attention "$att" --impl "$impl" \
            --d-model "$d" --layers "$L" --heads "$H" --seq "$T" --tokens $((T * B)) --steps "$S")" | tee -a "$out"
        done
        if [[ -n ${BASE:-} ]]; then
          echo "threads=$th round=$r $(OMP_NUM_THREADS=$th "$BASE/bench_attention" --attention "$att" --impl fused \
            --d-model "$d" --layers "$L" --heads "$H" --seq "$T" --tokens $((T * B)) --steps "$S" |
            sed 's/^RESULT \([a-z]*\) fused /RESULT \1 base /')" | tee -a "$out"
        fi
        if [[ $TORCH == 1 ]]; then
          echo "threads=$th round=$r $(OMP_NUM_THREADS=$th "$PY" bench/bench_attention_torch.py "$att" "$T" $((T * B)) "$S" "$d" "$L" "$H")" |
            tee -a "$out"
        fi
      done
    done
  done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
table=$(python3 - "$out" <<'PYEOF'
import sys, collections
best = collections.OrderedDict()  # (threads, attention, impl, d, L, H, T, B) -> [min ms, max rss, min cpu ms]
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 4 or f[2] != "RESULT": continue
    th = int(f[0].split("=")[1])
    kv = dict(x.split("=", 1) for x in f[5:])
    key = (th, f[3], f[4]) + tuple(int(kv[k]) for k in ("d", "L", "H", "T", "B"))
    ms, rss, cpu = float(kv["min_ms"]), float(kv["max_rss_mib"]), float(kv["min_cpu_ms"])
    old = best.get(key)
    best[key] = [min(ms, old[0]), max(rss, old[1]), min(cpu, old[2])] if old else [ms, rss, cpu]
def get(k, i): return best[k][i] if k in best else None
def fmt(x, spec): return format(x, spec) if x is not None else format("-", ">" + spec.split(".")[0])
base = any(k[2] == "base" for k in best)
print(f"{'thr':>3} {'attention':9} {'d':>4} {'L':>2} {'H':>2} {'T':>5} {'B':>3} {'fused_ms':>9} {'maps_ms':>9} {'torch_ms':>9} "
      f"{'maps/fused':>10} {'torch/fused':>11} {'fused_cpu':>9} {'torch_cpu':>9} {'cpu_ratio':>9} "
      f"{'fused_rss':>9} {'maps_rss':>9} {'torch_rss':>9}"
      + (f" {'base_ms':>9} {'torch/base':>10} {'base_cpu':>9} {'cpu_ratio_b':>12}" if base else "") + "  (RSS in MiB)")
shapes = list(dict.fromkeys((k[0],) + k[3:] + (k[1],) for k in best))
for th, d, L, H, T, B, a in shapes:
    f, m, t = (get((th, a, i, d, L, H, T, B), 0) for i in ("fused", "maps", "torch"))
    fr, mr, tr = (get((th, a, i, d, L, H, T, B), 1) for i in ("fused", "maps", "torch"))
    fc, tc = (get((th, a, i, d, L, H, T, B), 2) for i in ("fused", "torch"))
    print(f"{th:3} {a:9} {d:4} {L:2} {H:2} {T:5} {B:3} {fmt(f,'9.1f')} {fmt(m,'9.1f')} {fmt(t,'9.1f')} "
          f"{fmt(m/f if f and m else None,'10.2f')} {fmt(t/f if f and t else None,'11.2f')} "
          f"{fmt(fc,'9.1f')} {fmt(tc,'9.1f')} {fmt(tc/fc if fc and tc else None,'9.2f')} "
          f"{fmt(fr,'9.0f')} {fmt(mr,'9.0f')} {fmt(tr,'9.0f')}", end="")
    if base:
        b, bc = get((th, a, "base", d, L, H, T, B), 0), get((th, a, "base", d, L, H, T, B), 2)
        print(f" {fmt(b,'9.1f')} {fmt(t/b if b and t else None,'10.2f')} {fmt(bc,'9.1f')} "
              f"{fmt(tc/bc if bc and tc else None,'12.2f')}", end="")
    print()
PYEOF
)
{
  echo "# THREADS=\"$THREADS\" ROUNDS=$ROUNDS SHAPES=\"$SHAPES\" scripts/bench_attention.sh, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($(nproc) CPUs); load average (1/5/15 min) $load0 before, $load1 after"
  echo "# ms: the fastest step over all rounds (each process: one warm-up, then the shape's steps), rounds interleaved;"
  echo "# cpu: the least CPU time of a step (all threads; on a loaded machine the wall time includes waiting for a core),"
  echo "# cpu_ratio = torch_cpu / fused_cpu"
  if [[ -n ${BASE:-} ]]; then echo "# base: the fused step of $BASE ($(git -C "$BASE/.." log -1 --format='%h %s' 2>/dev/null | cut -c1-80))"; fi
  echo "# MTA = the paper's LM setting (kq 6x11 pre+post in layers l % 4 == 2, mixing pre+post in every layer, group norm + gate)"
  echo "$table"
} | tee ${SAVE:+"$SAVE"}
