#!/usr/bin/python3
"""Mean ± std over seeds of each configuration's last evaluation grid in a sweep, as markdown.

    /usr/bin/python3 scripts/grid_table.py runs/ablations/babilong babilong_accuracy
    /usr/bin/python3 scripts/grid_table.py runs/ablations/needle_pretrained needle_accuracy

Only finished runs count (a run.h5 whose last grid is from its final step); the grid's
row and column names are the task's (needle: length × depth; babilong: qa × distraction).
"""
import glob
import os
import sys

import h5py
import numpy as np


ROW_AXES = ("length", "qa")  # the tasks' row axes (EvalGrid's first), where both axes have one size


def last_grid(path, name):
    with h5py.File(path, "r") as f:
        g = f["eval_grids"]
        axes = [k[len(name) + 1:] for k in g if k.startswith(name + "_") and k != name + "_steps"]
        n_rows = g[name].shape[1]
        rows_name = next(a for a in sorted(axes, key=lambda a: a not in ROW_AXES) if len(g[name + "_" + a]) == n_rows)
        cols_name = next(a for a in axes if a != rows_name)
        return (g[name][-1], int(g[name + "_steps"][-1]), rows_name, g[name + "_" + rows_name][:],
                cols_name, g[name + "_" + cols_name][:])


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: grid_table.py SWEEP_DIR GRID_NAME")
    sweep, name = sys.argv[1], sys.argv[2]
    by = {}
    for r in sorted(glob.glob(os.path.join(sweep, "*,seed=*", "run.h5"))):
        cfg = os.path.basename(os.path.dirname(r)).split(",seed=")[0]
        by.setdefault(cfg, []).append(last_grid(r, name))
    for cfg, runs in by.items():
        final = max(step for _, step, *_ in runs)
        done = [r for r in runs if r[1] == final]
        a = np.array([r[0] for r in done])
        _, _, rn, rows, cn, cols = done[0]
        sd = (lambda x: x.std(ddof=1)) if len(a) > 1 else (lambda x: 0.0)
        fmt = lambda v: f"{v:g}"
        print(f"\n{cfg}: accuracy at step {final}, mean ± std over {len(a)} seeds "
              f"({len(runs) - len(a)} unfinished left out); rows {rn}, columns {cn}\n")
        print(f"| {rn} \\ {cn} | " + " | ".join(fmt(c) for c in cols) + " | mean |")
        print("|---" * (len(cols) + 2) + "|")
        for i, r in enumerate(rows):
            cells = [f"{a[:, i, j].mean():.2f} ± {sd(a[:, i, j]):.2f}" for j in range(len(cols))]
            print(f"| {fmt(r)} | " + " | ".join(cells) + f" | {a[:, i, :].mean():.2f} |")
        print("| mean | " + " | ".join(f"{a[:, :, j].mean():.2f}" for j in range(len(cols))) + f" | {a.mean():.3f} |")


if __name__ == "__main__":
    main()
