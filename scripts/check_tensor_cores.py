#!/usr/bin/env python3
"""Reads what nvcc makes of the attention kernels (cuda/attention.cu) and checks that the
tensor-core ones use the tensor cores.

For each architecture (sm_80, sm_90) it compiles the file once with `-Xptxas -v -keep`,
then, for every tensor-core kernel (cuda/attention_flash.cuh: flash::fwd, flash::bwd_kv,
flash::bwd_q, each head dim and output type; cuda/attention_mta_tc.cuh: the fused MTA
kernels mta_lse, mta_out, mta_dr, mta_dq, mta_dkv, one each, head dim a runtime value), asserts that
  - its PTX contains mma.sync.aligned.m16n8k16 (bf16 -> f32), and for the FlashAttention-2
    kernels ldmatrix and cp.async (with its wait_group),
  - ptxas reports 0 bytes of spill stores and loads and no stack frame (no local memory),
and that every expected kernel is there: a kernel meant for tensor cores that has none,
or is missing, fails. Prints registers and shared memory per kernel as a table.

  scripts/check_tensor_cores.py --nvcc /usr/local/cuda/bin/nvcc [--source-dir .] [--work-dir DIR]
Exit 0 when every check holds, 1 otherwise, 2 on bad usage or a failed compile.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ARCHS = ("80", "90")
# The tensor-core kernels: (mangled-name pattern, short name), each instantiated for head dims
# 32/64/128 and two output types (float, bfloat16), and what each must contain.
KERNELS = (("5flash3fwdILi", "flash::fwd"), ("5flash6bwd_kvILi", "flash::bwd_kv"), ("5flash5bwd_qILi", "flash::bwd_q"))
HEAD_DIMS = (32, 64, 128)
# The fused MTA kernels (no templates): their operands are staged by plain shared-memory
# stores, so only mma.sync is required.
MTA_KERNELS = (("6mta_tc7mta_lse", "mta_tc::mta_lse"), ("6mta_tc7mta_out", "mta_tc::mta_out"),
               ("6mta_tc6mta_dr", "mta_tc::mta_dr"), ("6mta_tc6mta_dq", "mta_tc::mta_dq"),
               ("6mta_tc7mta_dkv", "mta_tc::mta_dkv"))
REQUIRED = (
    ("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", "mma.sync"),
    ("ldmatrix.sync.aligned.m8n8.x4", "ldmatrix"),
    ("cp.async.cg.shared.global", "cp.async"),
    ("cp.async.wait_group", "cp.async.wait_group"),
)


# Dynamic shared memory per launch, bytes: cuda/attention_flash.cuh's fwd_smem, bwd_kv_smem and
# bwd_q_smem (64-row tiles; the dK/dV query tile is 16 rows at D = 128, else 32).
def dynamic_smem(kind, d):
    if kind == "flash::fwd":
        return (64 + 4 * 64) * d * 2
    if kind == "flash::bwd_kv":
        return (2 * 64 + 4 * (16 if d == 128 else 32)) * d * 2
    return (2 * 64 + 4 * 32) * d * 2


def demangle(names):
    tool = shutil.which("c++filt")
    if not tool:
        return {n: n for n in names}
    out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True).stdout.split("\n")
    return dict(zip(names, out))


def ptx_entries(ptx):
    """{entry name: body text} of a PTX file."""
    entries = {}
    marks = [(m.start(), m.group(1)) for m in re.finditer(r"\.entry\s+(\S+?)\s*\(", ptx)]
    for i, (start, name) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else len(ptx)
        entries[name] = ptx[start:end]
    return entries


def ptxas_report(text, arch):
    """{entry name: {registers, smem, stack, spill_stores, spill_loads}} from -Xptxas -v output."""
    report, cur = {}, None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\S+)' for 'sm_(\d+)'", line)
        if m:
            cur = m.group(1) if m.group(2) == arch else None
            if cur:
                report[cur] = {"registers": None, "smem": 0, "stack": None, "spill_stores": None, "spill_loads": None}
            continue
        if not cur:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            report[cur].update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            report[cur]["registers"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            report[cur]["smem"] = int(s.group(1)) if s else 0
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nvcc", required=True)
    ap.add_argument("--source-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--work-dir", default=None, help="where the kept PTX goes (default: a temporary folder)")
    args = ap.parse_args()
    src = os.path.abspath(args.source_dir)
    cu = os.path.join(src, "cuda", "attention.cu")
    if not os.path.isfile(cu) or not os.access(args.nvcc, os.X_OK):
        print(f"check_tensor_cores: expected {cu} and an executable nvcc, got --nvcc {args.nvcc}", file=sys.stderr)
        return 2
    work = args.work_dir or tempfile.mkdtemp(prefix="mtalab_ptx_")
    os.makedirs(work, exist_ok=True)
    cmd = [args.nvcc, "-std=c++17", "-O3", "-I" + src, "-c", "-o", os.path.join(work, "attention.o"), "-Xptxas", "-v",
           "-keep", "-keep-dir", work]
    for a in ARCHS:
        cmd += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    cmd.append(cu)
    print("$ " + " ".join(cmd))
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        print(run.stdout + run.stderr, file=sys.stderr)
        print("check_tensor_cores: nvcc failed", file=sys.stderr)
        return 2

    failures, rows = [], []
    for arch in ARCHS:
        ptx_path = os.path.join(work, f"attention.compute_{arch}.ptx")
        with open(ptx_path) as f:
            entries = ptx_entries(f.read())
        report = ptxas_report(run.stdout + run.stderr, arch)
        names = demangle(sorted(entries))
        for pattern, kind in KERNELS:
            found = [n for n in entries if pattern in n]
            for d in HEAD_DIMS:
                want = [n for n in found if f"{pattern}{d}E" in n]
                if len(want) != 2:
                    failures.append(f"sm_{arch} {kind}<{d}>: expected 2 instantiations (float and bfloat16 outputs), found {len(want)}")
                for n in sorted(want):
                    body = entries[n]
                    missing = [label for text, label in REQUIRED if text not in body]
                    r = report.get(n)
                    if r is None or r["registers"] is None:
                        failures.append(f"sm_{arch} {names[n]}: no ptxas report")
                        continue
                    if missing:
                        failures.append(f"sm_{arch} {names[n]}: no {', '.join(missing)} in its PTX")
                    if r["spill_stores"] or r["spill_loads"] or r["stack"]:
                        failures.append(f"sm_{arch} {names[n]}: {r['spill_stores']} bytes spill stores, "
                                        f"{r['spill_loads']} spill loads, {r['stack']} bytes stack frame (expected 0)")
                    out_type = "bf16" if "bfloat16EEE" in n.split(f"{pattern}{d}E")[1][:20] else "f32"
                    rows.append((f"sm_{arch}", f"{kind}<{d}, {out_type}>", r["registers"], r["smem"],
                                 dynamic_smem(kind, d), r["spill_stores"] + r["spill_loads"],
                                 body.count("mma.sync"), body.count("ldmatrix"), body.count("cp.async.cg")))
        for pattern, kind in MTA_KERNELS:
            want = [n for n in entries if pattern in n]
            if len(want) != 1:
                failures.append(f"sm_{arch} {kind}: expected 1 kernel, found {len(want)}")
                continue
            n = want[0]
            body, r = entries[n], report.get(n)
            if r is None or r["registers"] is None:
                failures.append(f"sm_{arch} {kind}: no ptxas report")
                continue
            if REQUIRED[0][0] not in body:
                failures.append(f"sm_{arch} {kind}: no mma.sync in its PTX")
            if r["spill_stores"] or r["spill_loads"] or r["stack"]:
                failures.append(f"sm_{arch} {kind}: {r['spill_stores']} bytes spill stores, "
                                f"{r['spill_loads']} spill loads, {r['stack']} bytes stack frame (expected 0)")
            rows.append((f"sm_{arch}", kind, r["registers"], r["smem"], "by shape", r["spill_stores"] + r["spill_loads"],
                         body.count("mma.sync"), body.count("ldmatrix"), body.count("cp.async.cg")))
    print(f"{'arch':6} {'kernel':26} {'regs':>5} {'static smem':>12} {'dynamic smem':>13} {'spill B':>8} "
          f"{'mma.sync':>9} {'ldmatrix':>9} {'cp.async':>9}")
    for r in rows:
        print(f"{r[0]:6} {r[1]:26} {r[2]:>5} {r[3]:>12} {r[4]:>13} {r[5]:>8} {r[6]:>9} {r[7]:>9} {r[8]:>9}")
    print("(static smem from ptxas; dynamic smem per launch from cuda/attention_flash.cuh, for the MTA kernels "
          "from the call's boxes (mta_tc::make_plan, at most 160 KiB); instruction counts are static PTX counts, "
          "after unrolling)")
    for f in failures:
        print("FAIL: " + f)
    print("check_tensor_cores: " + ("ok" if not failures else f"{len(failures)} failure(s)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
