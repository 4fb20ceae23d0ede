"""evaluate: IR metrics per run and split with trec_eval (``pytrec_eval``), plus per-query values.

Metric names look like ``ndcg@10``; each family maps to a trec_eval measure in :data:`METRICS`.
Conventions (trec_eval's, stated so nobody has to guess):

* gains are the graded qrels (nDCG uses linear gain, like trec_eval and BEIR);
* a judged query that is missing from a run scores 0 on every metric (trec_eval ``-c``);
* queries with no relevant document are left out of the means and counted separately
  (they are the no-evidence queries that later stages score with a false-evidence rate);
* ties inside a run are ordered by trec_eval (score, then doc id descending) -- the run files
  keep full float precision, so ties are real ties.

Significance (:func:`compare_to_baseline`): every run is compared with each reference run
(``evaluate.baseline``, then ``evaluate.compare_also``) on each split, paired over queries. Next to the
raw ``p_bootstrap`` / ``p_randomization`` each ``vs_<ref>`` entry carries Holm-Bonferroni adjusted
``p_bootstrap_holm`` / ``p_randomization_holm``; the family is every (run, reference) comparison this
evaluation makes on that split, all references together (its size is ``holm_family``). Read the
adjusted values when asking "is any of these differences real?" across the table.

The output folder holds ``per_query.tsv`` (run, split, query id, one column per metric),
``reliability.tsv`` and ``runs.tsv`` (run, split, sha256 of the run file: the system's identity,
with which the report counts the distinct systems read on test across experiments).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytrec_eval

from rerank_lab.config import EvaluateConfig, parse, section
from rerank_lab.errors import ConfigError, InputError, unknown_name
from rerank_lab.io.atomic import atomic_dir, write_text
from rerank_lab.io.qrels import Qrels, read_qrels
from rerank_lab.io.trec import Run, read_run, truncate


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric family: the trec_eval measure for cut-off ``k`` and the result key it writes."""

    measure: Callable[[int], str]
    key: Callable[[int], str]
    truncate_run: bool = False  # trec_eval's recip_rank has no cut-off: cut the run instead


METRICS: dict[str, Metric] = {
    "ndcg": Metric(lambda k: f"ndcg_cut.{k}", lambda k: f"ndcg_cut_{k}"),
    "recall": Metric(lambda k: f"recall.{k}", lambda k: f"recall_{k}"),
    "precision": Metric(lambda k: f"P.{k}", lambda k: f"P_{k}"),
    "map": Metric(lambda k: f"map_cut.{k}", lambda k: f"map_cut_{k}"),
    "mrr": Metric(lambda k: "recip_rank", lambda k: "recip_rank", truncate_run=True),
}


def parse_metric(name: str) -> tuple[Metric, int]:
    """``'ndcg@10'`` -> (the nDCG family, 10); unknown names list the valid families.

    >>> parse_metric("recall@100")[1]
    100
    """
    m = re.fullmatch(r"([a-z]+)@(\d+)", name)
    if not m:
        raise ConfigError(f"metric {name!r} is not <name>@<k>", fix="write e.g. ndcg@10, mrr@10, recall@100")
    family, k = m.group(1), int(m.group(2))
    if family not in METRICS:
        raise unknown_name("metric", family, list(METRICS))
    if k < 1:
        raise ConfigError(f"metric {name!r} needs k >= 1", fix="write e.g. ndcg@10")
    return METRICS[family], k


def per_query(run: Run, qrels: Qrels, metrics: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """``{query id: {metric: value}}`` for every query with at least one relevant document.

    >>> qrels = {"q1": {"d1": 1}, "q2": {"d9": 1}}
    >>> run = {"q1": {"d0": 2.0, "d1": 1.0}}
    >>> per_query(run, qrels, ("mrr@10", "recall@1"))
    {'q1': {'mrr@10': 0.5, 'recall@1': 0.0}, 'q2': {'mrr@10': 0.0, 'recall@1': 0.0}}
    """
    judged = {q: docs for q, docs in qrels.items() if any(g > 0 for g in docs.values())}
    out: dict[str, dict[str, float]] = {q: {} for q in sorted(judged)}
    if not judged:
        return out
    plain, cut = {}, {}
    for name in metrics:
        metric, k = parse_metric(name)
        (cut if metric.truncate_run else plain)[name] = (metric, k)
    jobs = [(run, plain)] if plain else []
    jobs += [(truncate(run, k), {name: (metric, k)}) for name, (metric, k) in cut.items()]
    for job_run, wanted in jobs:
        measures = {metric.measure(k) for metric, k in wanted.values()}
        results = pytrec_eval.RelevanceEvaluator(judged, measures).evaluate({q: d for q, d in job_run.items() if q in judged and d})
        for qid in out:
            for name, (metric, k) in wanted.items():
                out[qid][name] = float(results.get(qid, {}).get(metric.key(k), 0.0))
    return {qid: {name: v[name] for name in metrics} for qid, v in out.items()}  # keys in the order asked for


def mean(values: dict[str, dict[str, float]], metrics: tuple[str, ...]) -> dict[str, float]:
    """The mean of each metric over the queries in ``values``."""
    n = len(values)
    return {m: (sum(v[m] for v in values.values()) / n if n else 0.0) for m in metrics}


# tune's systems (<run>+<reranker>+tuned, <first stage>+tuned) may abstain: one that abstained on every query of a
# split wrote an empty run (nDCG 0, no false evidence), which is an answer, not a broken file
ABSTAINS = "+tuned"


def find_runs(run_roots: list[Path]) -> dict[str, Path]:
    """``{run name: folder}`` for every sub-folder holding ``*.trec`` files under the roots."""
    found: dict[str, Path] = {}
    for root in run_roots:
        for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()) if Path(root).is_dir() else []:
            if any(folder.glob("*.trec")):
                if folder.name in found:
                    raise InputError(
                        f"two runs are named {folder.name!r}", path=folder, fix="give every retriever and fusion a distinct name"
                    )
                found[folder.name] = folder
    if not found:
        raise InputError("no runs found", path=", ".join(map(str, run_roots)), fix="run the retrieve stage first")
    return found


def evaluate_runs(
    run_roots: list[Path], qrels_dir: Path, query_ids: dict[str, set[str]], metrics: tuple[str, ...], splits: tuple[str, ...]
) -> tuple[dict, list[tuple[str, str, str, dict[str, float]]]]:
    """Evaluate every run on every split; returns the summary and the per-query rows."""
    for name in metrics:
        parse_metric(name)
    summary: dict = {}
    rows: list[tuple[str, str, str, dict[str, float]]] = []
    for name, folder in find_runs(run_roots).items():
        for split in splits:
            run_path = folder / f"{split}.trec"
            if not run_path.is_file():
                continue
            run = read_run(run_path, allow_empty=name.endswith(ABSTAINS))
            known = query_ids.get(split, set())
            stray = sorted(set(run) - known)
            if stray:
                raise InputError(
                    f"run names query {stray[0]!r}, which the {split} split lacks",
                    path=run_path,
                    record=f"query {stray[0]}",
                    fix="retrieve with the dataset this evaluation reads",
                )
            qrels = read_qrels(qrels_dir / f"{split}.tsv")
            values = per_query(run, qrels, metrics)
            no_evidence = known - set(values)
            summary.setdefault(name, {})[split] = {
                **{m: round(v, 6) for m, v in mean(values, metrics).items()},
                "queries": len(values),
                "queries_without_relevant": len(no_evidence),
            }
            if no_evidence:  # any answer to a no-evidence query is false evidence
                fer = false_evidence_rate(run, no_evidence, threshold=-math.inf)
                summary[name][split]["false_evidence_rate"] = round(fer, 6)
            rows += [(name, split, qid, v) for qid, v in values.items()]
    if not summary:  # runs exist, but none for the splits asked for: an empty metrics file would pass silently
        raise InputError(
            f"no run has a file for the split(s) {', '.join(splits)}",
            path=", ".join(map(str, run_roots)),
            fix="retrieve those splits (retrieve.splits, score.splits) or evaluate the splits the runs have",
        )
    return summary, rows


def compare_to_baseline(
    summary: dict,
    rows: list,
    baseline: str,
    metric: str,
    n_resamples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
    compare_also: Sequence[str] = (),
) -> None:
    """Add ``vs_<ref>`` to every other run's split summary, for each reference run ``ref`` (``baseline``,
    then each of ``compare_also``): the paired difference ``delta`` (run minus reference) in ``metric``
    with a bootstrap confidence interval ``ci_low``/``ci_high`` and p-value ``p_bootstrap``, and a
    randomization-test p-value ``p_randomization``.

    Multiple comparisons: ``p_bootstrap_holm`` / ``p_randomization_holm`` are the raw p-values after
    Holm-Bonferroni adjustment (:func:`rerank_lab.stats.holm`) over a family of ``holm_family`` tests:
    every (run, reference) comparison this call makes on the same split, all references together --
    so pass every reference in one call. Two references compared with each other (A vs B and B vs A)
    test one hypothesis with one p-value (the paired differences only change sign): that pair counts
    once in the family, and both entries get its adjusted value.
    """
    from rerank_lab.stats import holm, paired_bootstrap, randomization_test

    references = list(dict.fromkeys((baseline, *compare_also)))  # a repeated name is one reference, tested once
    for ref in references:
        if ref not in summary:
            setting, role = ("evaluate.baseline", "baseline") if ref == baseline else ("evaluate.compare_also", "reference")
            raise ConfigError(f"{role} run {ref!r} was not evaluated", fix=f"set {setting} to one of: {', '.join(sorted(summary))}")
    values: dict[tuple[str, str], dict[str, float]] = {}
    for run, split, qid, v in rows:
        values.setdefault((run, split), {})[qid] = v[metric]
    # split -> {frozenset({run, ref}): [(entry, raw bootstrap p, raw randomization p), ...]}
    families: dict[str, dict[frozenset[str], list[tuple[dict, float, float]]]] = {}
    for ref in references:
        for (run, split), system in sorted(values.items()):
            base = values.get((ref, split))
            if run == ref or base is None or len(base) < 2:
                continue
            boot = paired_bootstrap(base, system, n_resamples, confidence, seed)
            perm = randomization_test(base, system, n_resamples, seed)
            entry = {
                "metric": metric,
                "delta": round(boot["mean_difference"], 6),
                "ci_low": round(boot["ci_low"], 6),
                "ci_high": round(boot["ci_high"], 6),
                "p_bootstrap": round(boot["p_value"], 6),
                "p_randomization": round(perm["p_value"], 6),
            }
            summary[run][split][f"vs_{ref}"] = entry
            families.setdefault(split, {}).setdefault(frozenset((run, ref)), []).append((entry, boot["p_value"], perm["p_value"]))
    for tests in families.values():
        pairs = list(tests.values())
        # both directions of a pair give the same p-values; max() keeps the adjustment conservative regardless
        adjusted_boot = holm([max(p for _, p, _ in pair) for pair in pairs])
        adjusted_perm = holm([max(p for _, _, p in pair) for pair in pairs])
        for pair, p_boot, p_perm in zip(pairs, adjusted_boot, adjusted_perm):
            for entry, _, _ in pair:
                entry.update(p_bootstrap_holm=round(p_boot, 6), p_randomization_holm=round(p_perm, 6), holm_family=len(pairs))


def calibration_summary(
    summary: dict, prob_dirs: list[Path], qrels_dir: Path, splits: tuple[str, ...], n_bins: int = 10
) -> list[tuple[str, str, str, dict]]:
    """ECE of every probabilities file (``probabilities/<split>.tsv`` from tune), raw (sigmoid) and
    calibrated, added to ``summary[run][split]``; returns the reliability-diagram bins.

    Labels are 1 for a pair whose doc is relevant (grade > 0), else 0 -- pairs of no-evidence
    queries included, since a confident score there is exactly the miscalibration that matters.
    """
    from rerank_lab.calibration import expected_calibration_error, reliability_bins

    bins: list[tuple[str, str, str, dict]] = []
    for folder in prob_dirs:
        for split in splits:
            path = Path(folder) / f"{split}.tsv"
            if not path.is_file():
                continue
            qrels = read_qrels(qrels_dir / f"{split}.tsv")
            by_run: dict[str, tuple[list[float], list[float], list[int]]] = {}
            for no, line in enumerate(path.read_text(encoding="utf-8").splitlines()[1:], start=2):
                cols = line.split("\t")
                if len(cols) != 6:
                    raise InputError(
                        f"expected 6 columns, got {len(cols)}", path=path, record=f"line {no}", fix="write it with the tune stage"
                    )
                run, qid, did, _, p_raw, p = cols
                try:
                    raw_v, cal_v = float(p_raw), float(p)
                except ValueError:
                    raw_v = cal_v = math.nan
                if not (0.0 <= raw_v <= 1.0 and 0.0 <= cal_v <= 1.0):  # NaN fails too
                    raise InputError(
                        f"probabilities {p_raw!r}, {p!r} are not numbers in [0, 1]",
                        path=path,
                        record=f"line {no}",
                        fix="write it with the tune stage",
                    )
                raw, cal, labels = by_run.setdefault(run, ([], [], []))
                raw.append(raw_v)
                cal.append(cal_v)
                labels.append(int(qrels.get(qid, {}).get(did, 0) > 0))
            for run, (raw, cal, labels) in by_run.items():
                entry = summary.setdefault(run, {}).setdefault(split, {})
                entry["ece"] = round(expected_calibration_error(cal, labels, n_bins), 6)
                entry["ece_sigmoid"] = round(expected_calibration_error(raw, labels, n_bins), 6)
                entry["calibration_pairs"] = len(labels)
                bins += [(run, split, "calibrated", b) for b in reliability_bins(cal, labels, n_bins)]
                bins += [(run, split, "sigmoid", b) for b in reliability_bins(raw, labels, n_bins)]
    return bins


def write_evaluation(
    summary: dict, rows: list, metrics: tuple[str, ...], metrics_path: Path, per_query_dir: Path, bins: list | None = None
) -> None:
    """Write the DVC metrics JSON, ``per_query.tsv`` and ``reliability.tsv`` atomically (each on its own:
    the stage commits them together through rerank_lab.stage instead)."""
    write_per_query(rows, metrics, per_query_dir, bins)
    write_text(metrics_path, json.dumps(summary, indent=2, sort_keys=True) + "\n")


def run_hashes(run_roots: list[Path], splits: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """``(run, split, sha256 of the run file)`` for every run file evaluated: a system's identity.

    The report counts distinct systems read on test by it (rerank_lab.report.reads): the same
    first-stage file evaluated in ten experiments is one system, read once.
    """
    out = []
    for name, folder in find_runs(run_roots).items():
        for split in splits:
            path = folder / f"{split}.trec"
            if path.is_file():
                out.append((name, split, hashlib.sha256(path.read_bytes()).hexdigest()))
    return out


def write_per_query(
    rows: list, metrics: tuple[str, ...], per_query_dir: Path, bins: list | None = None, hashes: list[tuple[str, str, str]] | None = None
) -> None:
    """Write ``per_query.tsv``, (with ``bins``) ``reliability.tsv`` and (with ``hashes``) ``runs.tsv`` --
    run, split, sha256 -- into ``per_query_dir`` atomically."""
    with atomic_dir(per_query_dir) as tmp:
        lines = ["run\tsplit\tquery_id\t" + "\t".join(metrics)]
        lines += [f"{r}\t{s}\t{q}\t" + "\t".join(repr(v[m]) for m in metrics) for r, s, q, v in rows]
        write_text(tmp / "per_query.tsv", "\n".join(lines) + "\n")
        if hashes is not None:
            lines = ["run\tsplit\tsha256", *("\t".join(h) for h in hashes)]
            write_text(tmp / "runs.tsv", "\n".join(lines) + "\n")
        if bins:
            cols = ("low", "high", "count", "mean_confidence", "accuracy")
            lines = ["run\tsplit\tprobability\t" + "\t".join(cols)]
            lines += [f"{r}\t{s}\t{k}\t" + "\t".join("" if b[c] is None else repr(b[c]) for c in cols) for r, s, k, b in bins]
            write_text(tmp / "reliability.tsv", "\n".join(lines) + "\n")


def false_evidence_rate(run: Run, no_evidence_queries: set[str], threshold: float) -> float:
    """The share of no-evidence queries for which the run returns at least one result scoring ``>= threshold``.

    A no-evidence query has nothing relevant to find, so any result at or above the threshold is
    false evidence. A query absent from ``run`` (or with no results) returns nothing and counts as
    clean; run queries outside ``no_evidence_queries`` are ignored.

    >>> run = {"q1": {"d1": 0.9, "d2": 0.1}, "q2": {"d3": 0.4}, "q9": {"d4": 1.0}}
    >>> false_evidence_rate(run, {"q1", "q2", "q3"}, threshold=0.5)  # only q1 has a result >= 0.5
    0.3333333333333333
    """
    if not no_evidence_queries:
        raise InputError(
            "no no-evidence queries to score a false-evidence rate on",
            fix="use a split with no-evidence queries, e.g. scifact_rationales NOINFO claims",
        )
    flagged = sum(1 for qid in no_evidence_queries if any(score >= threshold for score in run.get(qid, {}).values()))
    return flagged / len(no_evidence_queries)


# --- the stage contract (rerank_lab.stage) ------------------------------------------------------


def configure(params: dict[str, Any]) -> EvaluateConfig:
    """The ``evaluate`` section."""
    return parse(EvaluateConfig, section(params, "evaluate"), "evaluate")


def run(cfg: EvaluateConfig, inputs: dict[str, Any], outputs: dict[str, Path]) -> dict:
    """Every run under ``--runs`` on ``cfg.splits`` (with paired tests against the baseline and ECE
    of ``--probabilities``); per-query values and each run file's sha256 into ``--output``, the
    summary is the metrics."""
    from rerank_lab.io.datasets import load_dataset

    dd = load_dataset(inputs["dataset"])
    ids = {s: set(dd[s]["id"]) for s in dd}
    summary, rows = evaluate_runs(list(inputs["runs"]), inputs["qrels"], ids, cfg.metrics, cfg.splits)
    if cfg.baseline:  # one call with every reference: the Holm family is all of its comparisons on a split
        compare_to_baseline(
            summary, rows, cfg.baseline, cfg.significance_metric, cfg.n_resamples, cfg.confidence, cfg.seed, compare_also=cfg.compare_also
        )
    bins = calibration_summary(summary, list(inputs["probabilities"] or ()), inputs["qrels"], cfg.splits, cfg.n_bins)
    write_per_query(rows, cfg.metrics, outputs["output"], bins, run_hashes(list(inputs["runs"]), cfg.splits))
    return summary


def describe(cfg: EvaluateConfig, summary: dict) -> str:
    """One line per run and split: the metrics, and the paired test against the baseline."""
    lines = []
    for run_name, splits in summary.items():
        for split, values in splits.items():
            sig = values.get(f"vs_{cfg.baseline}")
            extra = (
                f"  vs {cfg.baseline}: {sig['delta']:+.4f} [{sig['ci_low']:+.4f}, {sig['ci_high']:+.4f}] "
                f"p={sig['p_randomization']:.4f} (Holm {sig['p_randomization_holm']:.4f})"
                if sig
                else ""
            )
            more = "".join(f"  {k} {values[k]:.4f}" for k in ("false_evidence_rate", "ece") if k in values)
            shown = "  ".join(f"{m} {values[m]:.4f}" for m in cfg.metrics if m in values)
            lines.append(f"{run_name:>16} {split:<10} " + shown + more + extra)
    return "\n".join(lines)
