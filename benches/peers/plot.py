#!/usr/bin/env python3
"""Plots the cost-growth curves of the side-by-side harness.

Reads results/growth.csv (and results/trim.csv when it has rows), both written
by `cargo run --release` in this directory, and writes results/growth.png.
Needs matplotlib (`pip install matplotlib`).
"""

import csv
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
COLORS = {"sqlite": "tab:blue", "postgres": "tab:green", "mysql": "tab:orange"}
STYLES = {
    "stored_session_us": ("-", "o", "stored-session"),
    "floor_us": ("--", "s", "floor (raw Diesel)"),
    "peer_us": (":", "^", "tower-sessions-sqlx-store"),
}


def read(name):
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main():
    growth = read("growth.csv")
    trims = read("trim.csv")
    panels = 3 if trims else 2
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 5))
    for ax, op in zip(axes, ["load", "update"]):
        for backend, color in COLORS.items():
            rows = [r for r in growth if r["backend"] == backend and r["op"] == op]
            if not rows:
                continue
            for column, (style, marker, who) in STYLES.items():
                points = [
                    (int(r["envelope_bytes"]), float(r[column]))
                    for r in rows
                    if r[column]
                ]
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, style, marker=marker, color=color,
                            label=f"{backend}: {who}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("session size on disk (envelope bytes)")
        ax.set_ylabel("typical time per operation (µs, interquartile mean)")
        ax.set_title(f"{op}, sequential")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    if trims:
        ax = axes[2]
        for backend, color in COLORS.items():
            rows = [r for r in trims if r["backend"] == backend]
            if not rows:
                continue
            xs = [int(r["rows"]) for r in rows]
            ax.plot(xs, [float(r["trim_inactive_s"]) for r in rows], "-o",
                    color=color, label=f"{backend}: trim_inactive (batches of 1,000)")
            ax.plot(xs, [float(r["floor_delete_s"]) for r in rows], "--s",
                    color=color, label=f"{backend}: one DELETE statement")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("expired rows")
        ax.set_ylabel("seconds")
        ax.set_title("trimming")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = os.path.join(RESULTS, "growth.png")
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
