"""Seeds as an axis: experiments that differ only in ``train.seed`` are one system, reported as mean ± std.

A *seed group* is the set of (revision, dataset) rows whose params are equal except ``train.seed``
(one member per seed value: the first listed committed revision, the workspace only when no
commit has that seed -- it repeats the last experiment run). The group shows, per metric, the mean
and the sample standard deviation over its members (n - 1 in the denominator; none for n = 1).

Its paired test is run on *seed-averaged* per-query values: for each test query, the tuned system's
value (``evaluate.significance_metric``) averaged over the members, against the first stage
(``evaluate.baseline``) averaged the same way -- the randomization test of :mod:`rerank_lab.stats`
with the group's ``evaluate.n_resamples`` / ``evaluate.seed``. Averaging first tests the system a
reader would deploy (any seed), not one lucky seed, and keeps one pair per query. A group of one
is the experiment itself: its test is the one evaluate already ran, and is reused.

Groups are also compared with each other: per dataset, the best group (by mean dev confirm
nDCG@10, the leaderboard's rule) against every other group, on the same averaged values.
"""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

from rerank_lab.errors import InputError
from rerank_lab.report.board import COMBINATION, RANK_BY
from rerank_lab.report.revs import RevisionFiles

SEED = "train.seed"
MEAN_STD = ("dev_confirm_ndcg@10", "test_ndcg@10", "test_false_evidence", "test_recall@100")


def group_key(params: dict[str, Any], dataset: str) -> str:
    """Every param but the seed, and the dataset: equal keys are one seed group.

    >>> group_key({"train.seed": 1, "train.loss": "x"}, "ds") == group_key({"train.seed": 2, "train.loss": "x"}, "ds")
    True
    """
    rest = {k: v for k, v in params.items() if k != SEED}
    return json.dumps([dataset, rest], sort_keys=True, default=str)


def seed_groups(sourced: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[list[tuple[dict[str, Any], dict[str, Any]]]]:
    """``(record, leaderboard row)`` pairs into seed groups, in order of first appearance."""
    groups: dict[str, dict[str, tuple[dict, dict]]] = {}
    # committed revisions first: the workspace joins only with a seed no commit has
    for rec, row in sorted(sourced, key=lambda pair: pair[0]["kind"] == "workspace"):
        seed = json.dumps(rec["params"].get(SEED), default=str)
        groups.setdefault(group_key(rec["params"], row["dataset"]), {}).setdefault(seed, (rec, row))
    return [sorted(members.values(), key=lambda m: _seed_order(m[0]["params"].get(SEED))) for members in groups.values()]


def _seed_order(seed: Any) -> tuple[bool, Any]:
    """Numbers by value (2 before 10), anything else after them by its text."""
    number = isinstance(seed, int | float) and not isinstance(seed, bool)
    return (not number, seed if number else str(seed))


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the values present (std needs two).

    >>> mean_std([0.5, 0.54, 0.52])
    (0.52, 0.02)
    >>> mean_std([0.5, None])
    (0.5, None)
    """
    present = [float(v) for v in values if v is not None]
    if not present:
        return None, None
    return round(statistics.fmean(present), 12), (round(statistics.stdev(present), 12) if len(present) > 1 else None)


def averaged(per_member: list[dict[str, float]]) -> dict[str, float]:
    """Per query, the mean over the members; every member must score the same queries.

    >>> averaged([{"q1": 0.5, "q2": 0.1}, {"q1": 0.7, "q2": 0.3}])
    {'q1': 0.6, 'q2': 0.2}
    """
    queries = set(per_member[0])
    for values in per_member[1:]:
        if set(values) != queries:
            odd = sorted(queries ^ set(values))[0]
            raise InputError(
                "the members of a seed group score different test queries",
                record=f"query {odd}",
                fix="compare experiments evaluated on the same dataset and split",
            )
    return {q: statistics.fmean(v[q] for v in per_member) for q in sorted(queries)}


def _names(params: dict[str, Any]) -> tuple[str, str, str, int, int]:
    tuned = f"{params.get('tune.run', 'bm25')}+{params.get('score.name', 'ce')}+tuned"
    baseline = params.get("evaluate.baseline")
    metric = params.get("evaluate.significance_metric", "ndcg@10")
    return tuned, baseline, metric, int(params.get("evaluate.n_resamples", 10000)), int(params.get("evaluate.seed", 0))


def _test(a: dict[str, float], b: dict[str, float], n_resamples: int, seed: int) -> tuple[float | None, float | None, str]:
    """The mean difference ``b - a`` and the randomization p-value; (None, None, why) when it cannot run."""
    from rerank_lab.stats import randomization_test

    try:
        result = randomization_test(a, b, n_resamples, seed)
    except InputError as exc:
        return None, None, str(exc).split(" (fix:")[0]
    return round(result["mean_difference"], 6), result["p_value"], ""


def summarize(members: list[tuple[dict[str, Any], dict[str, Any]]], files: RevisionFiles) -> dict[str, Any]:
    """One group's row: combination, n, seeds, mean ± std, and (n >= 2) the test on averaged values.

    ``_tuned`` (the seed-averaged per-query values of the tuned system, or None) is kept for the
    between-group tests and dropped before writing.
    """
    first_rec, first_row = members[0]
    tuned, baseline, metric, n_resamples, seed = _names(first_rec["params"])
    seeds = [rec["params"].get(SEED) for rec, _ in members]
    out: dict[str, Any] = {
        "group": first_row["experiment"],
        "dataset": first_row["dataset"],
        **{c: first_row.get(c) for c in COMBINATION if c != "dataset"},
        "n": len(members),
        "seeds": ", ".join(str(s) for s in seeds),  # members come sorted by seed
        "experiments": ", ".join(row["experiment"] for _, row in members),
    }
    for m in MEAN_STD:
        out[m], out[f"{m}_std"] = mean_std([row.get(m) for _, row in members])
    out.update(test_delta_vs_first_stage=None, test_p_vs_first_stage=None, test_p_holm_test_reads=None, note="", _tuned=None)
    out.update(_key=group_key(first_rec["params"], first_row["dataset"]), _resamples=(n_resamples, seed))
    tables = [files.per_query(rec["rev"], first_row["dataset"]) for rec, _ in members]
    lacking = [row["experiment"] for (_, row), t in zip(members, tables) if t is None or (tuned, "test") not in t]
    if lacking:
        out["note"] = f"no per-query test values of {tuned} for {', '.join(lacking)}"
        if len(members) == 1:  # evaluate's own test still stands
            out["test_p_vs_first_stage"] = first_row.get("test_p_vs_first_stage")
        return out
    try:
        system = averaged([{q: v[metric] for q, v in t[(tuned, "test")].items()} for t in tables])
        out["_tuned"] = system
        if baseline is not None and all((baseline, "test") in t for t in tables):
            first = averaged([{q: v[metric] for q, v in t[(baseline, "test")].items()} for t in tables])
            if len(members) == 1:  # the experiment itself: evaluate ran this very test
                out["test_delta_vs_first_stage"] = round(statistics.fmean(system[q] - first[q] for q in system), 6)
                out["test_p_vs_first_stage"] = first_row.get("test_p_vs_first_stage")
            else:
                delta, p, why = _test(first, system, n_resamples, seed)
                out.update(test_delta_vs_first_stage=delta, test_p_vs_first_stage=p, note=why)
    except (InputError, KeyError) as exc:
        out["note"] = str(exc).split(" (fix:")[0] if isinstance(exc, InputError) else f"metric {exc} missing from per_query.tsv"
        out["_tuned"] = None
    return out


def compare_groups(rows: list[dict[str, Any]]) -> None:
    """Sort the group rows (dataset, best mean dev confirm first) and test every group against the
    best of its dataset on the seed-averaged per-query values (``*_vs_best_group``), with the best
    group's ``evaluate.n_resamples`` / ``evaluate.seed``."""

    def score(row: dict[str, Any]) -> float:
        return row[RANK_BY] if row.get(RANK_BY) is not None else -math.inf

    rows.sort(key=lambda r: (r["dataset"], -score(r)))
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        row.update(vs_best_group=None, test_delta_vs_best_group=None, test_p_vs_best_group=None, test_p_holm_vs_best_group=None)
        top = best.setdefault(row["dataset"], row)
        if top is row:
            continue
        row["vs_best_group"] = top["group"]
        if top["_tuned"] is not None and row["_tuned"] is not None:
            delta, p, why = _test(top["_tuned"], row["_tuned"], *top["_resamples"])
            row.update(test_delta_vs_best_group=delta, test_p_vs_best_group=p)
            if why:
                row["note"] = "; ".join(filter(None, (row["note"], why)))


def mean_std_cell(row: dict[str, Any], metric: str) -> str | None:
    """``0.5200 ± 0.0200`` (or the mean alone for one seed): the table's cell."""
    mean, std = row.get(metric), row.get(f"{metric}_std")
    if mean is None:
        return None
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"
