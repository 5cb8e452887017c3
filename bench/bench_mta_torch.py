#!/usr/bin/python3
"""PyTorch counterpart of bench/bench_mta.cpp, written the way the MTA paper's reference
code computes it: Mask_0 / Mask_-inf as materialised boolean masks (masked_fill), the
key-query convolution as F.pad + grouped F.conv2d over the full T x T maps, head mixing
as an einsum over groups of heads.

Same cases, same deterministic inputs and the same output lines as the C++ benchmark:
    RESULT <case> <median ms> <min ms>
    CHECK <case> <name> <value>
so scripts/bench_mta.sh can put the timings side by side and compare the CHECK values.
Run with Debian's torch: /usr/bin/python3 bench/bench_mta_torch.py [repeats] [max_T]
Threads: OMP_NUM_THREADS (default 2), applied with torch.set_num_threads.
"""
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

B, H, DH, CH = 1, 4, 32, 2


def pattern(shape, amp, freq, phase):
    """value[i] = amp * sin(freq * i + phase) in float64, stored as float32."""
    n = math.prod(shape)
    i = torch.arange(n, dtype=torch.float64)
    return (amp * torch.sin(freq * i + phase)).to(torch.float32).reshape(shape)


def kq_weights(cq, ck, phase):
    w = torch.zeros(H, cq, ck)
    w[:, cq - 1, (ck - 1) // 2] = 1.0  # identity (pad both)
    return (w + pattern((H, cq, ck), 0.05, 0.7, phase)).requires_grad_(True)


def mix_weights(phase):
    m = torch.eye(CH).repeat(H // CH, 1, 1)
    return (m + pattern((H // CH, CH, CH), 0.1, 1.3, phase)).requires_grad_(True)


def kq_conv_ref(x, w, causal):
    """Conv(Mask_0(x)): zero the future, pad (keys both sides, queries before), grouped conv."""
    cq, ck = w.shape[1], w.shape[2]
    x = x.masked_fill(~causal, 0.0)
    x = F.pad(x, ((ck - 1) // 2, (ck - 1) // 2, cq - 1, 0))
    return F.conv2d(x, w.unsqueeze(1), groups=x.shape[1])


def head_mix_ref(x, m):
    b, h, t, _ = x.shape
    g, ch = m.shape[0], m.shape[1]
    y = torch.einsum("bgiqk,gij->bgjqk", x.reshape(b, g, ch, t, t), m)
    return y.reshape(b, h, t, t)


def time_ms(repeats, f):
    """(median, min) wall time in ms over `repeats` runs, after a warm-up of at least 3 runs
    and 0.5 s (at most 20 runs) so first-touch page faults and allocator growth are not timed."""
    w0 = time.perf_counter()
    for w in range(20):
        f()
        if w >= 2 and time.perf_counter() - w0 > 0.5:
            break
    ms = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        ms.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ms), min(ms)


def bench_kqconv(T, cq, ck, repeats):
    name = f"kqconv T={T} {cq}x{ck}"
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    x = pattern((B, H, T, T), 1.0, 0.001, 0.3).requires_grad_(True)
    K = kq_weights(cq, ck, 0.1)
    G = pattern((B, H, T, T), 1.0, 0.0007, 1.1)

    def step():
        x.grad = None
        K.grad = None
        y = kq_conv_ref(x, K, causal).masked_fill(~causal, 0.0)  # the op is causal: Mask_0 after
        y.backward(G)

    med, best = time_ms(repeats, step)
    print(f"RESULT {name} {med:.3f} {best:.3f}")
    with torch.no_grad():
        y = kq_conv_ref(x, K, causal).masked_fill(~causal, 0.0)
        print(f"CHECK {name} out_sum {(y * G).sum().item():.6e}")
    print(f"CHECK {name} gx_l1 {x.grad.abs().sum().item():.6e}")
    print(f"CHECK {name} gK_l1 {K.grad.abs().sum().item():.6e}")
    sys.stdout.flush()


def bench_mta(T, cq, ck, repeats):
    name = f"mta T={T} {cq}x{ck}"
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    q = pattern((B, H, T, DH), 1.0, 0.01, 0.0).requires_grad_(True)
    k = pattern((B, H, T, DH), 1.0, 0.013, 0.5).requires_grad_(True)
    v = pattern((B, H, T, DH), 1.0, 0.017, 1.0).requires_grad_(True)
    Kpre, Kpost = kq_weights(cq, ck, 0.2), kq_weights(cq, ck, 0.9)
    Mpre, Mpost = mix_weights(0.4), mix_weights(1.7)
    params = [q, k, v, Kpre, Kpost, Mpre, Mpost]
    out = {}

    def step():
        for t in params:
            t.grad = None
        s = q @ k.transpose(-1, -2) / math.sqrt(DH)
        s = head_mix_ref(kq_conv_ref(s, Kpre, causal), Mpre)  # pre-softmax
        p = torch.softmax(s.masked_fill(~causal, float("-inf")), dim=-1)
        p = kq_conv_ref(p, Kpost, causal).masked_fill(~causal, 0.0)  # post-softmax, Mask_0
        p = head_mix_ref(p, Mpost)
        loss = (p @ v).sum()
        loss.backward()
        out["loss"] = loss.item()

    med, best = time_ms(repeats, step)
    print(f"RESULT {name} {med:.3f} {best:.3f}")
    print(f"CHECK {name} loss {out['loss']:.6e}")
    for label, t in [("gq_l1", q), ("gv_l1", v), ("gKpre_l1", Kpre), ("gMpre_l1", Mpre),
                     ("gKpost_l1", Kpost), ("gMpost_l1", Mpost)]:
        print(f"CHECK {name} {label} {t.grad.abs().sum().item():.6e}")
    sys.stdout.flush()


def main():
    repeats = max(1, int(sys.argv[1])) if len(sys.argv) > 1 else 5
    max_t = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    print(f"# torch {torch.__version__} bench_mta_torch: B={B} H={H} Dh={DH} c_h={CH} float32, "
          f"threads={torch.get_num_threads()}, mkldnn={torch.backends.mkldnn.is_available()}, "
          f"median of {repeats}")
    for T in (256, 512, 1024):
        if T > max_t:
            break
        for cq, ck in ((6, 11), (2, 9)):
            bench_kqconv(T, cq, ck, repeats)
            bench_mta(T, cq, ck, repeats)


if __name__ == "__main__":
    main()
