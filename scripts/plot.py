#!/usr/bin/python3
"""Figures and an HTML page for a set of runs, as `mtalab plot` prepares them.

`mtalab plot` groups the runs exactly as `mtalab report` does and writes, into the output
folder, runs.tsv (configuration, run, log path, status) and report.csv (the report with
every run's row); this script reads those two files and each run.h5 and draws:

  curves.png               training loss, eval loss and the task metric over steps, one line
                           per configuration, its seeds as a band (mean ± std; min..max for 2)
  attention_<config>.png   the attention maps of the logged example, layers x heads, with the
                           example's bytes as token labels (first finished run of the config)
  kernels_<config>.png     every learned attention kernel (key-query convolutions, head
                           mixing) as heatmaps over the evaluation steps
  needle_<config>.png      the needle task's accuracy over its length x depth grid at the last
                           evaluation, the mean over the configuration's runs (task needle)
  babilong_<config>.png    the same for the babilong task's bAbI task x distraction grid
  index.html               the report table and every figure, self-contained but for the PNGs

Needs Debian's python3-matplotlib and python3-h5py (scripts/setup.sh installs them).
"""
import csv
import html
import os
import re
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def read_runs(out):
    runs = []
    with open(os.path.join(out, "runs.tsv"), newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            runs.append(row)
    return runs


def safe_name(name):
    return re.sub(r"[^A-Za-z0-9._+=-]", "_", name) or "_"


def load(path):
    """The curves and arrays of one run.h5 (None where absent); never raises."""
    try:
        with h5py.File(path, "r") as f:
            d = {"attrs": dict(f.attrs)}
            for table in ("train", "eval"):
                if table in f:
                    d[table] = {k: np.asarray(f[table][k][:], dtype=float) for k in f[table]}
            d["attention"] = {}
            if "attention" in f:
                for k in f["attention"]:
                    d["attention"][k] = np.asarray(f["attention"][k][:])
            d["kernels"] = {}
            if "kernels" in f:
                for k in f["kernels"]:
                    if not k.endswith("_steps"):
                        d["kernels"][k] = (np.asarray(f["kernels"][k][:]), np.asarray(f["kernels"][k + "_steps"][:]))
            d["grids"] = {}
            if "eval_grids" in f:
                g = f["eval_grids"]
                for k in g:
                    if k + "_steps" in g:  # a snapshot; its axes are <k>_<axis>
                        axes = sorted((a for a in g if a.startswith(k + "_") and a != k + "_steps"), key=len)
                        d["grids"][k] = (np.asarray(g[k][:], dtype=float), np.asarray(g[k + "_steps"][:]),
                                         {a[len(k) + 1:]: np.asarray(g[a][:]) for a in axes})
            return d
    except Exception as e:  # an unreadable log is a row in the report; here it is skipped
        print(f"plot: skipping {path}: {e}", file=sys.stderr)
        return None


def band(xs_list, ys_list):
    """Mean and spread of several curves on the first one's x values."""
    x = xs_list[0]
    ys = np.array([np.interp(x, xs, ys) for xs, ys in zip(xs_list, ys_list) if len(xs)])
    mean = ys.mean(axis=0)
    if len(ys) > 2:
        sd = ys.std(axis=0, ddof=1)
        return x, mean, mean - sd, mean + sd
    return x, mean, ys.min(axis=0), ys.max(axis=0)


def plot_curves(groups, data, out):
    metric = next((d["attrs"].get("metric") for runs in groups.values() for d in (data[r] for r in runs) if d), "metric")
    if isinstance(metric, bytes):
        metric = metric.decode()
    panels = [("train", "loss", "training loss"), ("eval", "loss", "eval loss"), ("eval", metric, metric)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for i, (config, runs) in enumerate(groups.items()):
        color = plt.cm.tab10(i % 10)
        for ax, (table, col, _) in zip(axes, panels):
            curves = [(data[r][table]["step"], data[r][table][col]) for r in runs
                      if data[r] and table in data[r] and col in data[r][table] and len(data[r][table]["step"])]
            if not curves:
                continue
            x, m, lo, hi = band([c[0] for c in curves], [c[1] for c in curves])
            ax.plot(x, m, color=color, label=f"{config} (n={len(curves)})", marker="o" if len(x) < 3 else None)
            if len(curves) > 1:
                ax.fill_between(x, lo, hi, color=color, alpha=0.25, linewidth=0)
    for ax, (_, _, title) in zip(axes, panels):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "curves.png"), dpi=90)
    plt.close(fig)
    return "curves.png"


def token_labels(d, n):
    toks = d["attention"].get("tokens")
    if toks is None or len(toks) != n:
        return None
    return [chr(int(t)) if 32 <= int(t) < 127 else "·" for t in toks]


def plot_attention(config, d, out):
    layers = sorted((k for k in d["attention"] if k.startswith("layer_")), key=lambda k: int(k[6:]))
    if not layers:
        return None
    H, T = d["attention"][layers[0]].shape[0], d["attention"][layers[0]].shape[-1]
    labels = token_labels(d, T)
    size = 3.2 if T <= 64 else 2.6
    fig, axes = plt.subplots(len(layers), H, figsize=(size * H, size * len(layers)), squeeze=False)
    for li, name in enumerate(layers):
        maps = d["attention"][name]
        for h in range(H):
            ax = axes[li][h]
            ax.imshow(maps[h], cmap="viridis", vmin=0, interpolation="nearest")
            ax.set_title(f"layer {name[6:]}, head {h}", fontsize=9)
            if labels and T <= 64:
                ax.set_xticks(range(T))
                ax.set_yticks(range(T))
                fs = 6 if T <= 32 else 4
                ax.set_xticklabels(labels, fontsize=fs, family="monospace")
                ax.set_yticklabels(labels, fontsize=fs, family="monospace")
            else:
                ax.set_xticks([])
                ax.set_yticks([])
    fig.suptitle(f"{config}\nattention maps of the logged example (rows: queries, columns: keys)", fontsize=10)
    fig.tight_layout()
    name = f"attention_{safe_name(config)}.png"
    fig.savefig(os.path.join(out, name), dpi=80)
    plt.close(fig)
    return name


def plot_kernels(config, d, out, max_steps=5, max_rows=12):
    rows = []  # (label, [(step, 2-D array)])
    # Key-query convolutions first (what MTA learns to look at), then head mixing.
    order = sorted(d["kernels"].items(), key=lambda kv: ("kq_kernel" not in kv[0], kv[0]))
    for pname, (snaps, steps) in order:
        if snaps.ndim < 3:
            continue
        picks = sorted(set(np.linspace(0, len(steps) - 1, min(max_steps, len(steps))).round().astype(int)))
        short = pname.replace("layers.", "L").replace(".attention.", " ")
        for h in range(snaps.shape[1]):
            rows.append((f"{short} [{h}]", [(int(steps[i]), snaps[i][h]) for i in picks]))
    if not rows:
        return None
    rows = rows[:max_rows]
    ncol = max(len(r[1]) for r in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(2.2 * ncol + 1, 1.6 * len(rows) + 0.8), squeeze=False)
    for ri, (label, snaps) in enumerate(rows):
        lim = max(1e-6, max(float(np.abs(a).max()) for _, a in snaps))
        for ci in range(ncol):
            ax = axes[ri][ci]
            ax.set_xticks([])
            ax.set_yticks([])
            if ci >= len(snaps):
                ax.axis("off")
                continue
            step, a = snaps[ci]
            im = ax.imshow(a, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest", aspect="auto")
            if ri == 0:
                ax.set_title(f"step {step}", fontsize=9)
            if ci == 0:
                ax.set_ylabel(label, fontsize=7)
        fig.colorbar(im, ax=axes[ri].tolist(), fraction=0.02)
    fig.suptitle(f"{config}: learned kernels over training (red +, blue -)", fontsize=10)
    name = f"kernels_{safe_name(config)}.png"
    fig.savefig(os.path.join(out, name), dpi=80)
    plt.close(fig)
    return name


# The tasks' evaluation grids (/eval_grids/<name>): figure stem, row and column axes, their
# labels and the page's caption. One list: plot_grid and main read it.
GRIDS = [
    ("needle_accuracy", "needle", "length", "depth", "length (bytes)", "depth of the asked needle",
     "Needle accuracy by length and depth", lambda x: f"{int(x)}"),
    ("babilong_accuracy", "babilong", "qa", "distraction", "bAbI task", "distraction (bytes of haystack)",
     "BabiLong accuracy by task and distraction", lambda x: f"QA{int(x)}"),
]


def plot_grid(config, ds, grid, out):
    """Accuracy over a task's grid (rows x columns), mean over runs, at the last evaluation."""
    name, stem, row_axis, col_axis, row_label, col_label, _, row_fmt = grid
    finals = [d["grids"][name][0][-1] for d in ds]
    shapes = {a.shape for a in finals}
    if len(shapes) != 1:
        return None
    acc = np.mean(finals, axis=0)
    _, steps, axes = ds[0]["grids"][name]
    rows, cols = axes.get(row_axis, np.arange(acc.shape[0])), axes.get(col_axis, np.arange(acc.shape[1]))
    fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 2.5, 0.6 * len(rows) + 1.8))
    im = ax.imshow(acc, cmap="viridis", vmin=0, vmax=1, aspect="auto", origin="lower")
    for i in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            ax.text(j, i, f"{acc[i, j]:.2f}", ha="center", va="center", color="w" if acc[i, j] < 0.6 else "k", fontsize=9)
    ax.set_xticks(range(len(cols)), [f"{x:g}" for x in cols])
    ax.set_yticks(range(len(rows)), [row_fmt(x) for x in rows])
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    fig.colorbar(im, ax=ax, label="exact-match accuracy")
    ax.set_title(f"{config}: {stem} accuracy at step {int(steps[-1])} ({len(ds)} run{'s' if len(ds) > 1 else ''})",
                 fontsize=10)
    fig.tight_layout()
    fname = f"{stem}_{safe_name(config)}.png"
    fig.savefig(os.path.join(out, fname), dpi=80)
    plt.close(fig)
    return fname


def report_html(out):
    path = os.path.join(out, "report.csv")
    if not os.path.exists(path):
        return "<p>no report</p>"
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keep = ["run", "attention", "n", "params", "steps", "tokens", "train_loss", "eval_loss", "metric", "value",
            "tokens_per_s", "wall_s", "peak_rss_mib", "status"]
    head = rows[0]
    idx = [head.index(k) for k in keep if k in head]
    std = {k: head.index(k + "_std") for k in ("train_loss", "eval_loss", "value", "wall_s") if k + "_std" in head}
    lines = ["<table>", "<tr>" + "".join(f"<th>{html.escape(head[i])}</th>" for i in idx) + "</tr>"]
    for r in rows[1:]:
        cls = ' class="run"' if r[0] == "run" else ""
        cells = []
        for i in idx:
            v = r[i]
            s = std.get(head[i])
            if s is not None and r[s] not in ("", "-"):
                v = f"{v} ± {r[s]}"
            cells.append(f"<td>{html.escape(v)}</td>")
        lines.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def main():
    out = sys.argv[1]
    runs = read_runs(out)
    groups = {}
    for r in runs:
        groups.setdefault(r["configuration"], []).append(r)
    # A configuration's band is over its finished runs (as the report's mean ± std is); an
    # unfinished run's shorter curve would bend it. With none finished, every run is shown.
    for config, rs in groups.items():
        done = [r for r in rs if r["status"] == "finished"]
        groups[config] = [r["log"] for r in (done or rs)]
    data = {r["log"]: load(r["log"]) for r in runs}
    figures = []
    if any(data.values()):
        figures.append(("Loss and metric over training", plot_curves(groups, data, out)))
    for config, logs in groups.items():
        d = next((data[l] for l in logs if data[l] and data[l]["attention"]), None)
        if d:
            figures.append((f"Attention maps: {config}", plot_attention(config, d, out)))
        d = next((data[l] for l in logs if data[l] and data[l]["kernels"]), None)
        if d:
            name = plot_kernels(config, d, out)
            if name:
                figures.append((f"Learned kernels: {config}", name))
        for grid in GRIDS:
            ds = [data[l] for l in logs if data[l] and grid[0] in data[l]["grids"]]
            if ds:
                name = plot_grid(config, ds, grid, out)
                if name:
                    figures.append((f"{grid[6]}: {config}", name))
    title = html.escape(sys.argv[2] if len(sys.argv) > 2 else "mtalab runs")
    body = [f"<h1>{title}</h1>", report_html(out)]
    for caption, name in figures:
        body.append(f'<h2>{html.escape(caption)}</h2>\n<p><a href="{html.escape(name)}"><img src="{html.escape(name)}" '
                    f'alt="{html.escape(caption)}"></a></p>')
    page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + title + "</title><style>"
            "body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;font-size:13px}"
            "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right} tr.run td{color:#666;font-size:12px}"
            "img{max-width:100%}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    with open(os.path.join(out, "index.html.tmp"), "w") as f:
        f.write(page)
    os.replace(os.path.join(out, "index.html.tmp"), os.path.join(out, "index.html"))
    for _, name in figures:
        print(os.path.join(out, name))
    print(os.path.join(out, "index.html"))


if __name__ == "__main__":
    main()
