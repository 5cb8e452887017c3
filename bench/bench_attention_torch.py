#!/usr/bin/python3
"""PyTorch eager counterpart of bench/bench_attention.cpp: the same training step (a
4-layer, d = 256, 4-head Llama-style model: RMSNorm, RoPE, SwiGLU, tied output; AdamW,
gradient clipping) with attention written as the MTA paper's reference code writes it —
materialised [T, T] maps, boolean masks, the key-query convolution as F.pad + grouped
F.conv2d, head mixing as a 1x1 grouped convolution over heads, group norm and a gate.

    /usr/bin/python3 bench/bench_attention_torch.py <softmax|mta> <T> [tokens] [steps] [d_model] [layers] [heads]
prints one line like bench_attention:
    RESULT <attention> torch d=<d> L=<layers> H=<heads> T=<T> B=<B> ms=<median ms> min_ms=<fastest> min_cpu_ms=<least CPU time> tok_s=<tokens/s> peak_tensor_mib=- max_rss_mib=<MiB> loss=<loss>
MTA's options are mtalab's defaults, i.e. the paper's LM setting: 6x11 kq-conv before and
after softmax in layers l % 4 == 2, head mixing before and after softmax over all heads in
every layer, group norm with a scalar gate. Threads: OMP_NUM_THREADS (default 2).
"""
import math
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

D_MODEL, N_LAYERS, N_HEADS, VOCAB = 256, 4, 4, 256
CQ, CK = 6, 11


def ffn_hidden(d):
    h = (8 * d + 2) // 3
    return (h + 63) // 64 * 64


class RMSNorm(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.w


def rope(x, cos, sin):
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class Attention(torch.nn.Module):
    def __init__(self, layer, mta):
        super().__init__()
        d, h = D_MODEL, N_HEADS
        self.wq, self.wk, self.wv, self.wo = (torch.nn.Linear(d, d, bias=False) for _ in range(4))
        self.mta = mta
        self.kq = mta and layer % 4 == 2
        if self.kq:
            init = torch.zeros(h, 1, CQ, CK)
            init[:, 0, CQ - 1, (CK - 1) // 2] = 1.0
            self.kq_pre = torch.nn.Parameter(init.clone())
            self.kq_post = torch.nn.Parameter(init.clone())
        if mta:
            self.mix_pre = torch.nn.Parameter(torch.eye(h).reshape(h, h, 1, 1).clone())
            self.mix_post = torch.nn.Parameter(torch.eye(h).reshape(h, h, 1, 1).clone())
            self.subln = RMSNorm(d // h)
            self.gate_w = torch.nn.Parameter(torch.zeros(d // h))
            self.gate_b = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, cos, sin, causal):
        b, t, d = x.shape
        h, dh = N_HEADS, d // N_HEADS
        q = rope(self.wq(x).view(b, t, h, dh).transpose(1, 2), cos, sin)
        k = rope(self.wk(x).view(b, t, h, dh).transpose(1, 2), cos, sin)
        v = self.wv(x).view(b, t, h, dh).transpose(1, 2)
        s = q @ k.transpose(-1, -2) / math.sqrt(dh)
        if self.kq:  # Conv(Mask_0(S)), pad keys on both sides and queries before
            s = F.conv2d(F.pad(s.masked_fill(~causal, 0.0), ((CK - 1) // 2, (CK - 1) // 2, CQ - 1, 0)), self.kq_pre,
                         groups=h)
        if self.mta:
            s = F.conv2d(s, self.mix_pre)  # head mixing: a 1x1 convolution over heads
        p = torch.softmax(s.masked_fill(~causal, float("-inf")), dim=-1)
        if self.kq:
            p = F.conv2d(F.pad(p, ((CK - 1) // 2, (CK - 1) // 2, CQ - 1, 0)), self.kq_post, groups=h)
            p = p.masked_fill(~causal, 0.0)
        if self.mta:
            p = F.conv2d(p, self.mix_post)
        o = p @ v
        if self.mta:
            o = self.subln(o)
            o = o * torch.sigmoid((o * self.gate_w).sum(-1, keepdim=True) + self.gate_b)
        return self.wo(o.transpose(1, 2).reshape(b, t, d))


class Block(torch.nn.Module):
    def __init__(self, layer, mta):
        super().__init__()
        d, hid = D_MODEL, ffn_hidden(D_MODEL)
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)
        self.attn = Attention(layer, mta)
        self.w1, self.w3 = torch.nn.Linear(d, hid, bias=False), torch.nn.Linear(d, hid, bias=False)
        self.w2 = torch.nn.Linear(hid, d, bias=False)

    def forward(self, x, cos, sin, causal):
        x = x + self.attn(self.n1(x), cos, sin, causal)
        h = self.n2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Model(torch.nn.Module):
    def __init__(self, mta):
        super().__init__()
        self.emb = torch.nn.Embedding(VOCAB, D_MODEL)
        self.blocks = torch.nn.ModuleList(Block(l, mta) for l in range(N_LAYERS))
        self.norm = RMSNorm(D_MODEL)

    def forward(self, tok, cos, sin, causal):
        x = self.emb(tok)
        for blk in self.blocks:
            x = blk(x, cos, sin, causal)
        return self.norm(x) @ self.emb.weight.t()


def main():
    attention, T = sys.argv[1], int(sys.argv[2])
    tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 8192
    steps = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    global D_MODEL, N_LAYERS, N_HEADS
    if len(sys.argv) > 7:
        D_MODEL, N_LAYERS, N_HEADS = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    torch.manual_seed(0)
    B = max(1, tokens // T)
    model = Model(attention == "mta")
    with torch.no_grad():  # mtalab's initialisation scale: N(0, d^-1/2) truncated at 3 std
        for name, prm in model.named_parameters():
            if prm.dim() == 2:
                torch.nn.init.trunc_normal_(prm, std=D_MODEL ** -0.5, a=-3 * D_MODEL ** -0.5, b=3 * D_MODEL ** -0.5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0)
    dh = D_MODEL // N_HEADS
    inv = 10000.0 ** (-torch.arange(0, dh, 2, dtype=torch.float64) / dh)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos, sin = ang.cos().float(), ang.sin().float()
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    idx = torch.arange(B * T)
    tok = ((idx * 7919 + idx // 13) % 256).reshape(B, T)
    target = torch.roll(tok, -1, dims=1)  # each position predicts the next one (wrapping)
    loss_v = 0.0

    def step():
        nonlocal loss_v
        opt.zero_grad(set_to_none=True)
        logits = model(tok, cos, sin, causal)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_v = loss.item()

    step()
    ms, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        ms.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    med = statistics.median(ms)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"RESULT {attention} torch d={D_MODEL} L={N_LAYERS} H={N_HEADS} T={T} B={B} ms={med:.2f} min_ms={min(ms):.2f} min_cpu_ms={min(cpu):.2f} tok_s={B * T / (med / 1e3):.0f} "
          f"peak_tensor_mib=- max_rss_mib={rss:.1f} loss={loss_v:.6f}")


if __name__ == "__main__":
    main()
