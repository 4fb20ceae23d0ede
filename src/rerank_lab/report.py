"""report: the markdown a reviewer reads on a pull request, and the leaderboard files.

Everything comes from DVC's own view of the repository, read with its CLI in JSON:

* ``dvc exp show --json`` -- every experiment (and the workspace and its baseline commit) with its
  params and metrics: the leaderboard;
* ``dvc metrics diff <base> --json`` / ``dvc params diff <base> --json`` -- what this change moves;
* the workspace's stage outputs -- ``data/tune/<ds>/{topk,trials}.tsv`` and
  ``data/evaluate/<ds>/reliability.tsv`` -- for the PNG plots, rendered offline with matplotlib.

The leaderboard keeps, per (dataset, generator, reranker, regime, loss, negatives) combination and
false-evidence budget ``tune.epsilon``, the experiment whose tuned system scores the best nDCG@10 on
the *confirm* half of the dev split (``best_confirm_ndcg@10`` in ``metrics/tune/<ds>.json``, shown as
``dev_confirm_ndcg@10``; an experiment without it ranks last). Tune fits its calibrators and chooses
its settings on the other, *select* half, so the full-dev nDCG@10 that evaluate reports is optimistic
and is not used to choose; test numbers are shown, never used to choose either. Next to it, from the
same file: ``beats_untuned_on_confirm`` (the tuned system beats the untuned reranker on the confirm
half), ``beats_first_stage_on_confirm`` (it beats the first stage alone there) and
``meets_epsilon_on_confirm`` (its false-evidence rate there stays within ``tune.epsilon``).
``test_p_holm_vs_first_stage`` is evaluate's Holm-adjusted randomization p-value (family: every
comparison of that experiment's evaluate call on the test split), next to the raw one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from rerank_lab.errors import InputError
from rerank_lab.io.atomic import atomic_dir, write_text

# the plan's combination, plus the false-evidence budget the system was tuned under: a system tuned
# without the constraint would otherwise always "win" on nDCG
COMBINATION = ("dataset", "generator", "reranker", "regime", "loss", "negatives", "epsilon")
SHOWN = (
    "dev_confirm_ndcg@10",
    "beats_untuned_on_confirm",
    "beats_first_stage_on_confirm",
    "meets_epsilon_on_confirm",
    "test_ndcg@10",
    "test_ci",
    "test_p_vs_first_stage",
    "test_p_holm_vs_first_stage",
    "test_false_evidence",
    "test_ece",
    "test_recall@100",
)
RANK_BY = "dev_confirm_ndcg@10"  # the tuned system on the held-out confirm half: tune neither fit nor chose on it
EVERY_SHOWN = (RANK_BY, "test_ndcg@10", "test_false_evidence")  # the shorter table of every experiment


def dvc_json(args: list[str], cwd: Path) -> Any:
    """Run ``dvc <args> --json`` in ``cwd``; a clear error when DVC fails (e.g. not a DVC repo)."""
    # the dvc installed next to rerank_lab, found without relying on an activated venv / PATH
    proc = subprocess.run([sys.executable, "-m", "dvc", *args, "--json"], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise InputError(
            f"`dvc {' '.join(args)}` failed: {tail[-1] if tail else 'exit ' + str(proc.returncode)}",
            path=cwd,
            fix="run the report from the root of a DVC repository with git history (and the base revision fetched)",
        )
    out = proc.stdout.strip()
    return json.loads(out) if out else {}


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def experiments(show: list[dict]) -> list[dict[str, Any]]:
    """Flatten ``dvc exp show --json`` into one record per revision: name, rev, kind, params, metrics.

    ``params`` maps dotted keys of params.yaml; ``metrics`` maps ``<file>`` to its parsed content.
    """
    records: list[dict[str, Any]] = []

    def add(entry: dict, kind: str, name: str | None) -> None:
        data = entry.get("data") or {}
        params = _flatten(((data.get("params") or {}).get("params.yaml") or {}).get("data") or {})
        metrics = {f: (m or {}).get("data") or {} for f, m in (data.get("metrics") or {}).items()}
        records.append(
            {"name": name or entry.get("rev", "")[:7], "rev": entry.get("rev"), "kind": kind, "params": params, "metrics": metrics}
        )

    for entry in show:
        if entry.get("rev") == "workspace":
            add(entry, "workspace", "workspace")
            continue
        add(entry, "baseline", entry.get("name"))
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                add(rev, "experiment", rev.get("name") or exp.get("name"))
    return records


def _param(params: dict[str, Any], key: str, default: Any = None) -> Any:
    return params.get(key, default)


def leaderboard_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (record, dataset): the combination and the tuned system's metrics."""
    rows = []
    for rec in records:
        p = rec["params"]
        run = _param(p, "tune.run", "bm25")
        tuned = f"{run}+{_param(p, 'score.name', 'ce')}+tuned"
        baseline = _param(p, "evaluate.baseline")
        datasets = _param(p, "datasets") or []
        for ds in datasets if isinstance(datasets, list) else [datasets]:
            ev = rec["metrics"].get(f"metrics/evaluate/{ds}.json") or {}
            tune = rec["metrics"].get(f"metrics/tune/{ds}.json") or {}
            dev, test = (ev.get(tuned) or {}).get("validation") or {}, (ev.get(tuned) or {}).get("test") or {}
            if not dev and not test and "best_confirm_ndcg@10" not in tune:
                continue
            sig = test.get(f"vs_{baseline}") or {}
            rows.append(
                {
                    "experiment": rec["name"],
                    "rev": (rec["rev"] or "")[:7],
                    "kind": rec["kind"],
                    "dataset": ds,
                    "generator": run,
                    "reranker": _param(p, "train.model"),
                    "regime": _param(p, "train.regime"),
                    "loss": _param(p, "train.loss"),
                    "negatives": _param(p, "mine.miner"),
                    "epsilon": _param(p, "tune.epsilon"),
                    "dev_confirm_ndcg@10": tune.get("best_confirm_ndcg@10"),
                    "beats_untuned_on_confirm": tune.get("beats_untuned_on_confirm"),
                    "beats_first_stage_on_confirm": tune.get("beats_first_stage_on_confirm"),
                    "meets_epsilon_on_confirm": tune.get("meets_epsilon_on_confirm"),
                    "test_ndcg@10": test.get("ndcg@10"),
                    "test_ci": f"[{sig['ci_low']:+.4f}, {sig['ci_high']:+.4f}]" if sig else None,
                    "test_p_vs_first_stage": sig.get("p_randomization"),
                    "test_p_holm_vs_first_stage": sig.get("p_randomization_holm"),
                    "test_false_evidence": test.get("false_evidence_rate"),
                    "test_ece": test.get("ece"),
                    "test_recall@100": test.get("recall@100"),
                    "first_stage_test_ndcg@10": ((ev.get(baseline) or {}).get("test") or {}).get("ndcg@10"),
                    "settings": json.dumps(tune.get("best", {}), sort_keys=True),
                }
            )
    return rows


def best_per_combination(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per combination, the row with the best confirm-half nDCG@10 (``dev_confirm_ndcg@10``; missing
    ranks last; ties: a committed revision over the workspace -- which repeats the last experiment
    run -- then first listed); sorted by dataset, then best first."""

    def score(row: dict[str, Any]) -> float:
        value = row.get(RANK_BY)
        return value if value is not None else -math.inf

    def rank(row: dict[str, Any]) -> tuple[float, bool]:
        return (score(row), row.get("kind") != "workspace")

    best: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[c] for c in COMBINATION)
        if key not in best or rank(row) > rank(best[key]):
            best[key] = row
    return sorted(best.values(), key=lambda r: (r["dataset"], -score(r)))


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v).replace("|", "\\|")


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "_(none)_\n"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_leaderboard(rows: list[dict[str, Any]], out: Path) -> None:
    """``leaderboard.{csv,json,md}``: the best experiment per combination."""
    columns = ["experiment", "rev", *COMBINATION, *SHOWN, "first_stage_test_ndcg@10", "settings"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "leaderboard.csv", buf.getvalue())
    write_text(out / "leaderboard.json", json.dumps(rows, indent=2) + "\n")
    write_text(out / "leaderboard.md", markdown_table(rows, columns[:-1]))


def diff_rows(diff: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """``dvc metrics/params diff --json`` as table rows."""
    rows = []
    for file, changes in sorted(diff.items()):
        for key, change in sorted(changes.items()):
            rows.append({"file": file, "key": key, "base": change.get("old"), "this change": change.get("new"), "diff": change.get("diff")})
    return rows


# --- plots --------------------------------------------------------------------------------------


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


# --- the report ---------------------------------------------------------------------------------


def build_report(repo: Path, out: Path, base: str = "main", all_commits: bool = True) -> dict[str, Any]:
    """Write ``report.md``, its PNGs and the leaderboard files under ``out``; returns what was written."""
    # every commit's experiments by default: cells queued on an earlier commit of the branch still count
    records = experiments(dvc_json(["exp", "show", "--no-pager", *(["--all-commits"] if all_commits else [])], repo))
    metrics_diff = diff_rows(dvc_json(["metrics", "diff", base], repo))
    params_diff = diff_rows(dvc_json(["params", "diff", base], repo))
    rows = leaderboard_rows(records)
    board = best_per_combination(rows)
    workspace = next((r for r in records if r["kind"] == "workspace"), None)
    datasets = (workspace or {}).get("params", {}).get("datasets") or []
    with atomic_dir(out) as tmp:
        write_leaderboard(board, tmp)
        plots: list[tuple[str, str]] = []
        for ds in datasets:
            for name, fn, src, title in (
                (f"{ds}-ndcg-vs-topk.png", plot_topk, repo / "data" / "tune" / ds / "topk.tsv", "dev nDCG@10 vs top_k_rerank"),
                (
                    f"{ds}-reliability.png",
                    plot_reliability,
                    repo / "data" / "evaluate" / ds / "reliability.tsv",
                    "reliability (test pairs)",
                ),
                (f"{ds}-optuna-history.png", plot_history, repo / "data" / "tune" / ds / "trials.tsv", "Optuna optimisation history"),
            ):
                if fn(src, tmp / name, f"{ds}: {title}"):
                    plots.append((name, ds))
        md = ["# rerank-lab report", ""]
        md += [f"Generated by `rerank-lab report` from `dvc exp show`, `dvc metrics diff {base}` and `dvc params diff {base}`.", ""]
        md += ["## Leaderboard: best experiment per combination (chosen on the held-out confirm half of dev)", ""]
        md += [
            "`dev_confirm_ndcg@10`: nDCG@10 of the tuned system on the confirm half of the dev split, which tune neither "
            "fits on nor chooses with (it tunes on the select half) -- the leaderboard ranks and chooses by it. "
            "`beats_untuned_on_confirm` / `beats_first_stage_on_confirm`: the tuned system beats the untuned reranker / "
            "the first stage alone on that half; `meets_epsilon_on_confirm`: its false-evidence rate there is within "
            "`tune.epsilon`. Test numbers are shown, never used to choose; `test_p_holm_vs_first_stage` is the randomization "
            "p-value Holm-adjusted over every comparison of that experiment's evaluation on the test split.",
            "",
        ]
        md += [markdown_table(board, ["experiment", "rev", *COMBINATION, *SHOWN]), ""]
        md += ["## Every experiment", ""]
        md += [
            markdown_table(
                rows,
                ["experiment", "kind", "rev", "dataset", "generator", "regime", "loss", "negatives", *EVERY_SHOWN],
            ),
            "",
        ]
        md += [f"## Params changed against `{base}`", "", markdown_table(params_diff, ["file", "key", "base", "this change"]), ""]
        md += [f"## Metrics changed against `{base}`", "", f"<details><summary>{len(metrics_diff)} changed values</summary>", ""]
        md += [markdown_table(metrics_diff, ["file", "key", "base", "this change", "diff"]), "</details>", ""]
        md += ["## Plots", ""]
        md += [f"![{name}]({name})" for name, _ in plots]
        write_text(tmp / "report.md", "\n".join(md) + "\n")
    return {
        "experiments": len(records),
        "leaderboard_rows": len(board),
        "plots": [p for p, _ in plots],
        "metrics_changed": len(metrics_diff),
    }


# --- the command's contract (rerank_lab.stage; report is no DVC stage, but writes the same way) ---


def configure(params: dict[str, Any], base: str, all_commits: bool, output: str) -> tuple[str, bool, str]:
    """The diff base, whether every commit's experiments count, and where the report goes (for the
    message); report reads no params."""
    return base, all_commits, output


def run(cfg: tuple[str, bool, str], inputs: dict[str, Any], outputs: dict[str, Path]) -> dict[str, Any]:
    """The report of the repository ``--repo`` into ``--output``."""
    base, all_commits, _ = cfg
    return build_report(inputs["repo"], outputs["output"], base, all_commits)


def describe(cfg: tuple[str, bool, str], written: dict[str, Any]) -> str:
    return (
        f"{cfg[2]}/report.md: {written['experiments']} revisions, {written['leaderboard_rows']} leaderboard rows, "
        f"{written['metrics_changed']} metrics changed vs {cfg[0]}, plots: {', '.join(written['plots']) or 'none'}"
    )
