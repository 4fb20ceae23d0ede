"""The leaderboard: ``dvc exp show --json`` flattened into one row per (revision, dataset), the best
experiment per combination chosen on the confirm half of dev, and the tables that show them."""

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
from rerank_lab.io.atomic import write_text

# the plan's combination, plus the false-evidence budget the system was tuned under: a system tuned
# without the constraint would otherwise always "win" on nDCG
COMBINATION = ("dataset", "trained_on", "generator", "reranker", "regime", "loss", "negatives", "epsilon")
SHOWN = (
    "dev_confirm_ndcg@10",
    "beats_untuned_on_confirm",
    "beats_first_stage_on_confirm",
    "meets_epsilon_on_confirm",
    "test_ndcg@10",
    "test_ci",
    "test_p_vs_first_stage",
    "test_p_holm_test_reads",
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
            # a dataset with no dev queries (ArguAna zero-shot) has no tuned system: its row is the untuned reranker
            system = tuned if tune.get("tuned", True) else tuned.removesuffix("+tuned")
            dev, test = (ev.get(system) or {}).get("validation") or {}, (ev.get(system) or {}).get("test") or {}
            if not dev and not test and "best_confirm_ndcg@10" not in tune:
                continue
            sig = test.get(f"vs_{baseline}") or {}
            rows.append(
                {
                    "experiment": rec["name"],
                    "rev": (rec["rev"] or "")[:7],
                    "kind": rec["kind"],
                    "dataset": ds,
                    "trained_on": _param(p, "train.dataset", ds),
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
                    "test_p_holm_test_reads": None,  # filled by rerank_lab.report.reads over every test read
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
