#!/usr/bin/python3
"""PyTorch twin of bench/bench_ops.cpp: the same cases (names, shapes, float32), the
same repeat rule, the same output format, for Debian's PyTorch 1.13.

    /usr/bin/python3 bench/bench_ops_torch.py [--threads N] [--min-time S] [--filter SUBSTR]

Prints one line per case:  BENCH <case> <median_ms> <min_ms> <reps>
Each case: 2 untimed warmup calls, then reps = clamp(min_time / first estimate, 5, 200)
timed calls. "_fb" cases are forward + backward from a fixed upstream gradient (or a
scalar loss), with leaf gradients set to None before each call.

Torch 1.13 has no rms_norm: that case is the usual composite
x * rsqrt(mean(x^2) + eps) * w, which is what a torch 1.13 model would run.
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0") or 0))
    p.add_argument("--min-time", type=float, default=0.4)
    p.add_argument("--filter", default="")
    p.add_argument("--list", action="store_true")
    return p.parse_args()


def time_case(name, fn, min_time):
    fn()
    t0 = time.perf_counter()
    fn()
    est = max((time.perf_counter() - t0) * 1000.0, 1e-3)
    reps = int(min(max(min_time * 1000.0 / est, 5.0), 200.0))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000.0)
    ts.sort()
    med = ts[reps // 2] if reps % 2 else 0.5 * (ts[reps // 2 - 1] + ts[reps // 2])
    print(f"BENCH {name} {med:.4f} {ts[0]:.4f} {reps}", flush=True)


def rms_norm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def make_cases():
    g = torch.Generator().manual_seed(1234)

    def randn(*s, std=1.0, rg=False):
        t = torch.randn(*s, generator=g) * std
        return t.requires_grad_(rg)

    def uniform(lo, hi, *s, rg=False):
        t = torch.rand(*s, generator=g) * (hi - lo) + lo
        return t.requires_grad_(rg)

    def zero(*ts):
        for t in ts:
            t.grad = None

    cs = []

    # --- matmul ---
    a, b = randn(1024, 1024), randn(1024, 1024)
    cs.append(("matmul_1024", lambda: torch.matmul(a, b)))
    ag, bg, gy = randn(1024, 1024, rg=True), randn(1024, 1024, rg=True), randn(1024, 1024)

    def mm_fb():
        zero(ag, bg)
        torch.matmul(ag, bg).backward(gy)
    cs.append(("matmul_1024_fb", mm_fb))

    x, w, bias = randn(2048, 256), randn(768, 256, std=0.05), randn(768, std=0.05)
    cs.append(("linear_2048x256x768", lambda: F.linear(x, w)))
    cs.append(("linear_bias_2048x256x768", lambda: F.linear(x, w, bias)))
    xg, wg, bgl = randn(2048, 256, rg=True), randn(768, 256, std=0.05, rg=True), randn(768, std=0.05, rg=True)
    gyl = randn(2048, 768)

    def lin_fb():
        zero(xg, wg)
        F.linear(xg, wg).backward(gyl)

    def linb_fb():
        zero(xg, wg, bgl)
        F.linear(xg, wg, bgl).backward(gyl)
    cs.append(("linear_2048x256x768_fb", lin_fb))
    cs.append(("linear_bias_2048x256x768_fb", linb_fb))

    q, k = randn(8, 4, 256, 64), randn(8, 4, 256, 64)
    cs.append(("attn_qkT_8x4x256x64", lambda: torch.matmul(q, k.transpose(-1, -2))))
    qg, kg, gs = randn(8, 4, 256, 64, rg=True), randn(8, 4, 256, 64, rg=True), randn(8, 4, 256, 256)

    def qk_fb():
        zero(qg, kg)
        torch.matmul(qg, kg.transpose(-1, -2)).backward(gs)
    cs.append(("attn_qkT_8x4x256x64_fb", qk_fb))
    p, v = randn(8, 4, 256, 256), randn(8, 4, 256, 64)
    cs.append(("attn_pv_8x4x256x64", lambda: torch.matmul(p, v)))

    # --- softmax ---
    xs = randn(8 * 4 * 256, 256)
    cs.append(("softmax_8192x256", lambda: torch.softmax(xs, -1)))
    xsg, gys = randn(8 * 4 * 256, 256, rg=True), randn(8 * 4 * 256, 256)

    def sm_fb():
        zero(xsg)
        torch.softmax(xsg, -1).backward(gys)

    def lsm_fb():
        zero(xsg)
        torch.log_softmax(xsg, -1).backward(gys)
    cs.append(("softmax_8192x256_fb", sm_fb))
    cs.append(("log_softmax_8192x256_fb", lsm_fb))

    # --- norms ---
    xn, wn, bn = randn(4096, 512), uniform(0.5, 1.5, 512), randn(512, std=0.1)
    cs.append(("rms_norm_4096x512", lambda: rms_norm(xn, wn)))
    xng, wng, bng = randn(4096, 512, rg=True), uniform(0.5, 1.5, 512, rg=True), randn(512, std=0.1, rg=True)
    gyn = randn(4096, 512)

    def rms_fb():
        zero(xng, wng)
        rms_norm(xng, wng).backward(gyn)

    def ln_fb():
        zero(xng, wng, bng)
        F.layer_norm(xng, (512,), wng, bng, 1e-5).backward(gyn)
    cs.append(("rms_norm_4096x512_fb", rms_fb))
    cs.append(("layer_norm_4096x512", lambda: F.layer_norm(xn, (512,), wn, bn, 1e-5)))
    cs.append(("layer_norm_4096x512_fb", ln_fb))

    # --- cross-entropy ---
    logits = randn(4096, 256)
    tgt = torch.randint(0, 256, (4096,), generator=g, dtype=torch.int64)
    cs.append(("cross_entropy_4096x256", lambda: F.cross_entropy(logits, tgt)))
    lg = randn(4096, 256, rg=True)

    def ce_fb():
        zero(lg)
        F.cross_entropy(lg, tgt).backward()
    cs.append(("cross_entropy_4096x256_fb", ce_fb))

    # --- elementwise, 4M ---
    ea, eb, row = randn(2048, 2048), randn(2048, 2048), randn(2048)
    cs.append(("add_4M", lambda: torch.add(ea, eb)))
    cs.append(("mul_4M", lambda: torch.mul(ea, eb)))
    cs.append(("add_bcast_row_4M", lambda: torch.add(ea, row)))
    cs.append(("mul_scalar_4M", lambda: torch.mul(ea, 0.5)))
    cs.append(("gelu_4M", lambda: F.gelu(ea)))
    cs.append(("exp_4M", lambda: torch.exp(ea)))
    eag, egy = randn(2048, 2048, rg=True), randn(2048, 2048)

    def gelu_fb():
        zero(eag)
        F.gelu(eag).backward(egy)
    cs.append(("gelu_4M_fb", gelu_fb))
    cs.append(("transpose_copy_2048x2048", lambda: ea.t().contiguous()))

    # --- reductions ---
    cs.append(("sum_all_4M", lambda: ea.sum()))
    cs.append(("sum_lastdim_4096x1024", lambda: ea.reshape(4096, 1024).sum(-1)))
    cs.append(("sum_dim0_4096x1024", lambda: ea.reshape(4096, 1024).sum(0)))

    # --- MLP training step ---
    mx, my = randn(256, 512), randn(256, 512)
    params = [randn(2048, 512, std=0.02, rg=True), torch.zeros(2048, requires_grad=True),
              randn(512, 2048, std=0.02, rg=True), torch.zeros(512, requires_grad=True)]

    def mlp_step():
        for t in params:
            t.grad = None
        h = F.gelu(F.linear(mx, params[0], params[1]))
        out = F.linear(h, params[2], params[3])
        loss = torch.mean(torch.square(out - my))
        loss.backward()
        with torch.no_grad():
            for t in params:
                t.copy_(t - t.grad * 1e-3)
    cs.append(("mlp_step_256x512x2048", mlp_step))
    return cs


def main():
    a = parse()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    cases = make_cases()
    if a.list:
        for n, _ in cases:
            print(n)
        return
    print(f"# torch {torch.__version__} bench_ops threads={torch.get_num_threads()} min_time={a.min_time:.2f}",
          flush=True)
    for name, fn in cases:
        if a.filter and a.filter not in name:
            continue
        time_case(name, fn, a.min_time)


if __name__ == "__main__":
    sys.exit(main())
