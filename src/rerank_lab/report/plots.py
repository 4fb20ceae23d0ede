"""The report's PNG plots, rendered offline with matplotlib from stage outputs of the workspace."""

from __future__ import annotations

import csv
import math
from pathlib import Path


def _read_tsv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    return list(csv.DictReader(path.read_text(encoding="utf-8").splitlines(), delimiter="\t"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, ax, title: str, out: Path) -> bool:
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


def plot_topk(path: Path, out: Path, title: str) -> bool:
    rows = _read_tsv(path)
    if not rows:
        return False
    plt = _plt()
    k = [int(r["top_k_rerank"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for part, style in (("select", "o-"), ("confirm", "s--")):
        ax.plot(k, [float(r[f"{part}_ndcg@10"]) for r in rows], style, label=f"nDCG@10 ({part})")
    ax.set_xlabel("top_k_rerank (other settings at the tuned best)")
    ax.set_ylabel("nDCG@10 (dev, has-evidence queries)")
    ax2 = ax.twinx()
    ax2.plot(k, [float(r["confirm_false_evidence"]) for r in rows], ":", color="grey", label="false evidence (confirm)")
    ax2.set_ylabel("false-evidence rate")
    ax2.set_ylim(0, 1)
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [h.get_label() for h in lines], loc="lower right", fontsize=8)
    return _save(plt, fig, ax, title, out)


def plot_reliability(path: Path, out: Path, title: str, split: str = "test") -> bool:
    rows = [r for r in _read_tsv(path) if r["split"] == split and r["mean_confidence"]]
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, label="perfect calibration")
    for kind, style in (("sigmoid", "s--"), ("calibrated", "o-")):
        pts = [r for r in rows if r["probability"] == kind]
        ax.plot([float(r["mean_confidence"]) for r in pts], [float(r["accuracy"]) for r in pts], style, label=kind)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability (bin)")
    ax.set_ylabel("share relevant (bin)")
    ax.legend(loc="upper left", fontsize=8)
    return _save(plt, fig, ax, title, out)


def plot_history(path: Path, out: Path, title: str) -> bool:
    rows = _read_tsv(path)
    if not rows:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    groups = {
        "feasible": [r for r in rows if r["state"] == "complete" and r["feasible"] == "True"],
        "infeasible (false evidence > ε)": [r for r in rows if r["state"] == "complete" and r["feasible"] != "True"],
        "pruned (last staged value)": [r for r in rows if r["state"] == "pruned" and r["value"] not in ("", "None")],
    }
    for (label, pts), (color, marker) in zip(groups.items(), (("tab:blue", "o"), ("tab:red", "x"), ("lightgrey", "."))):
        ax.scatter([int(r["number"]) for r in pts], [float(r["value"]) for r in pts], s=12, c=color, marker=marker, label=label)
    best, xs, ys = -math.inf, [], []
    for r in sorted(rows, key=lambda r: int(r["number"])):
        if r["state"] == "complete" and r["feasible"] == "True":
            best = max(best, float(r["value"]))
        if best > -math.inf:
            xs.append(int(r["number"]))
            ys.append(best)
    ax.plot(xs, ys, color="black", lw=1.5, label="best feasible so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("nDCG@10 (select half of dev)")
    ax.legend(fontsize=8, loc="lower right")
    return _save(plt, fig, ax, title, out)
