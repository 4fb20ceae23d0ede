"""report: the markdown a reviewer reads on a pull request, and the leaderboard files.

Everything comes from DVC's own view of the repository:

* ``dvc exp show --json`` -- every experiment (and the workspace and its baseline commit) with its
  params and metrics: the leaderboard (:mod:`.board`);
* ``dvc metrics diff <base> --json`` / ``dvc params diff <base> --json`` -- what this change moves;
* each ranked revision's ``data/evaluate/<ds>/{per_query,runs}.tsv``, read with ``dvc.api`` at that
  revision (:mod:`.revs`): seed groups (:mod:`.seeds`) and test-read accounting (:mod:`.reads`);
* the workspace's stage outputs -- ``data/tune/<ds>/{topk,trials}.tsv`` and
  ``data/evaluate/<ds>/reliability.tsv`` -- for the PNG plots (:mod:`.plots`).

The leaderboard keeps, per (dataset, generator, reranker, regime, loss, negatives) combination and
false-evidence budget ``tune.epsilon``, the experiment whose tuned system scores the best nDCG@10 on
the *confirm* half of the dev split (``best_confirm_ndcg@10`` in ``metrics/tune/<ds>.json``, shown as
``dev_confirm_ndcg@10``; an experiment without it ranks last). Tune fits its calibrators and chooses
its settings on the other, *select* half, so the full-dev nDCG@10 that evaluate reports is optimistic
and is not used to choose; test numbers are shown, never used to choose either. Next to it, from the
same file: ``beats_untuned_on_confirm``, ``beats_first_stage_on_confirm`` and ``meets_epsilon_on_confirm``.

Seeds are an axis: experiments whose params differ only in ``train.seed`` form a seed group, shown
as mean ± std with its paired test on seed-averaged per-query values (:mod:`.seeds`). Every raw test
p-value stands next to ``test_p_holm_test_reads``, Holm-adjusted over every distinct test comparison
behind the report, counted across all the experiments it ranks (:mod:`.reads`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rerank_lab.errors import redact
from rerank_lab.io.atomic import atomic_dir, write_text
from rerank_lab.report.board import (
    COMBINATION,
    EVERY_SHOWN,
    SHOWN,
    best_per_combination,
    diff_rows,
    dvc_json,
    experiments,
    leaderboard_rows,
    markdown_table,
    write_leaderboard,
)
from rerank_lab.report.plots import plot_history, plot_reliability, plot_topk
from rerank_lab.report.reads import TestReads
from rerank_lab.report.revs import RevisionFiles
from rerank_lab.report.seeds import MEAN_STD, compare_groups, mean_std_cell, seed_groups, summarize

__all__ = [
    "best_per_combination",
    "build_report",
    "diff_rows",
    "dvc_json",
    "experiments",
    "leaderboard_rows",
    "markdown_table",
    "plot_history",
    "plot_reliability",
    "plot_topk",
    "seed_report",
    "write_leaderboard",
]

GROUP_SHOWN = (
    "dataset", "experiments", "n", "seeds", *MEAN_STD, "test_delta_vs_first_stage", "test_p_vs_first_stage", "test_p_holm_test_reads",
    "vs_best_group", "test_delta_vs_best_group", "test_p_vs_best_group", "test_p_holm_vs_best_group", "note",
)  # fmt: skip


def seed_report(records: list[dict[str, Any]], files: RevisionFiles) -> tuple[list[dict], list[dict], TestReads]:
    """The leaderboard rows (every ranked revision × dataset), the seed groups and the test reads,
    every test p-value Holm-adjusted over the one family of :mod:`.reads`."""
    sourced = [(rec, row) for rec in records for row in leaderboard_rows([rec])]
    reads = TestReads()
    row_key: dict[int, Any] = {}
    for rec, row in sourced:
        ds, p = row["dataset"], rec["params"]
        evaluation = rec["metrics"].get(f"metrics/evaluate/{ds}.json") or {}
        keys = reads.add_evaluation(ds, rec["rev"], evaluation, files.run_hashes(rec["rev"], ds))
        tuned = f"{p.get('tune.run', 'bm25')}+{p.get('score.name', 'ce')}+tuned"
        row_key[id(row)] = keys.get((tuned, p.get("evaluate.baseline")))
    groups = []
    for members in seed_groups(sourced):
        group = summarize(members, files)
        if len(members) == 1:  # evaluate's own test of that experiment
            group["_family"] = row_key[id(members[0][1])]
        else:
            group["_family"] = reads.add(("seeds", group["_key"]), group["test_p_vs_first_stage"], "seeds")
        groups.append(group)
    compare_groups(groups)
    best = {}
    for group in groups:
        top = best.setdefault(group["dataset"], group)
        group["_between"] = reads.add(("groups", top["_key"], group["_key"]), group["test_p_vs_best_group"], "groups")
    adjusted = reads.adjusted()
    for _, row in sourced:
        row["test_p_holm_test_reads"] = adjusted.get(row_key[id(row)])
    for group in groups:
        group["test_p_holm_test_reads"] = adjusted.get(group.pop("_family"))
        group["test_p_holm_vs_best_group"] = adjusted.get(group.pop("_between"))
        for private in [k for k in group if k.startswith("_")]:
            del group[private]
    return [row for _, row in sourced], groups, reads


def _plots(repo: Path, datasets: list[str], tmp: Path) -> list[str]:
    plots = []
    for ds in datasets:
        for name, fn, src, title in (
            (f"{ds}-ndcg-vs-topk.png", plot_topk, repo / "data" / "tune" / ds / "topk.tsv", "dev nDCG@10 vs top_k_rerank"),
            (f"{ds}-reliability.png", plot_reliability, repo / "data" / "evaluate" / ds / "reliability.tsv", "reliability (test pairs)"),
            (f"{ds}-optuna-history.png", plot_history, repo / "data" / "tune" / ds / "trials.tsv", "Optuna optimisation history"),
        ):
            if fn(src, tmp / name, f"{ds}: {title}"):
                plots.append(name)
    return plots


def build_report(repo: Path, out: Path, base: str = "main", all_commits: bool = True) -> dict[str, Any]:
    """Write ``report.md``, its PNGs, the leaderboard and seed-group files under ``out``; returns what was written."""
    # every commit's experiments by default: cells queued on an earlier commit of the branch still count
    records = experiments(dvc_json(["exp", "show", "--no-pager", *(["--all-commits"] if all_commits else [])], repo))
    metrics_diff = diff_rows(dvc_json(["metrics", "diff", base], repo))
    params_diff = diff_rows(dvc_json(["params", "diff", base], repo))
    rows, groups, reads = seed_report(records, RevisionFiles(repo))
    board = best_per_combination(rows)
    workspace = next((r for r in records if r["kind"] == "workspace"), None)
    datasets = (workspace or {}).get("params", {}).get("datasets") or []
    with atomic_dir(out) as tmp:
        write_leaderboard(board, tmp)
        write_text(tmp / "seed_groups.json", json.dumps(groups, indent=2) + "\n")
        write_text(tmp / "test_reads.json", json.dumps(reads.summary(), indent=2, sort_keys=True) + "\n")
        plots = _plots(repo, datasets, tmp)
        md = ["# rerank-lab report", ""]
        md += [f"Generated by `rerank-lab report` from `dvc exp show`, `dvc metrics diff {base}` and `dvc params diff {base}`.", ""]
        md += ["## Test reads", "", reads.describe(len(rows)), ""]
        md += ["## Leaderboard: best experiment per combination (chosen on the held-out confirm half of dev)", ""]
        md += [
            "`dev_confirm_ndcg@10`: nDCG@10 of the tuned system on the confirm half of the dev split, which tune neither "
            "fits on nor chooses with (it tunes on the select half) -- the leaderboard ranks and chooses by it. "
            "`beats_untuned_on_confirm` / `beats_first_stage_on_confirm`: the tuned system beats the untuned reranker / "
            "the first stage alone on that half; `meets_epsilon_on_confirm`: its false-evidence rate there is within "
            "`tune.epsilon`. Test numbers are shown, never used to choose; `test_p_vs_first_stage` is evaluate's raw "
            "randomization p-value, `test_p_holm_test_reads` the same adjusted over every test comparison (see Test reads).",
            "",
        ]
        md += [markdown_table(board, ["experiment", "rev", *COMBINATION, *SHOWN]), ""]
        md += ["## Seed groups: experiments that differ only in `train.seed`", ""]
        md += [
            "Mean ± sample std (n - 1) over the group's n seeds. The paired randomization test of each group of two or more "
            "seeds runs on seed-averaged per-query test values (the tuned system's and the first stage's, each averaged "
            "over the seeds); a group of one shows evaluate's own test. Each group is also tested against the best group of "
            "its dataset (by mean dev confirm nDCG@10) on the same averaged values. Adjusted p-values: see Test reads.",
            "",
        ]
        shown = [{**g, **{m: mean_std_cell(g, m) for m in MEAN_STD}} for g in groups]
        md += [markdown_table(shown, list(GROUP_SHOWN)), ""]
        md += ["## Every experiment", ""]
        md += [markdown_table(rows, ["experiment", "kind", "rev", "dataset", "generator", "regime", "loss", "negatives", *EVERY_SHOWN]), ""]
        md += [f"## Params changed against `{base}`", "", markdown_table(params_diff, ["file", "key", "base", "this change"]), ""]
        md += [f"## Metrics changed against `{base}`", "", f"<details><summary>{len(metrics_diff)} changed values</summary>", ""]
        md += [markdown_table(metrics_diff, ["file", "key", "base", "this change", "diff"]), "</details>", ""]
        md += ["## Plots", ""]
        md += [f"![{name}]({name})" for name in plots]
        write_text(tmp / "report.md", redact("\n".join(md) + "\n"))  # params diffs may show a URL: never its password
    return {
        "experiments": len(records),
        "leaderboard_rows": len(board),
        "seed_groups": len(groups),
        **reads.summary(),
        "plots": plots,
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
        f"{written['seed_groups']} seed groups, {written['distinct_systems']} distinct systems read on test "
        f"(Holm family of {written['family']}), {written['metrics_changed']} metrics changed vs {cfg[0]}, "
        f"plots: {', '.join(written['plots']) or 'none'}"
    )
