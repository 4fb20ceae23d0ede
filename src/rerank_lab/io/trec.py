"""TREC run files: ``qid Q0 docid rank score tag``, one format for every stage.

Order is pinned to trec_eval's own (score descending, ties by doc id *descending*: its
``comp_sim_docno``), and every stage that cuts, reranks or samples from a run goes through
:func:`ranked`, so what a stage cuts is exactly what evaluate ranks. Scores are written with
``repr`` (shortest round-trip), so a run reads back exactly as it was computed and the same
ranking always gives the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

from rerank_lab.errors import InputError
from rerank_lab.io.atomic import atomic_file
from rerank_lab.io.text import read_lines

Run = dict[str, dict[str, float]]


def ranked(docs: dict[str, float]) -> list[tuple[str, float]]:
    """Docs in trec_eval's order: score descending, ties by doc id descending.

    trec_eval (and pytrec_eval) sort a query's results with ``comp_sim_docno``: higher score
    first, then ``strcmp(b, a)`` -- the larger doc id first. Python compares strings by code
    point, which is the byte order of their UTF-8, so this is the same order.

    >>> ranked({"b": 1.0, "a": 1.0, "c": 2.0})
    [('c', 2.0), ('b', 1.0), ('a', 1.0)]
    """
    return sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)


def ranked_scores(order: list[str]) -> dict[str, float]:
    """Scores that encode a ranking exactly: ``n - position`` (no ties, any length).

    Reranked and tuned runs are written this way: their order is the system's answer, and the
    raw model scores behind it live in their own files (``scores.tsv``, ``probabilities/``).

    >>> ranked_scores(["d3", "d1", "d2"])
    {'d3': 3.0, 'd1': 2.0, 'd2': 1.0}
    """
    return {d: float(len(order) - i) for i, d in enumerate(order)}


def truncate(run: Run, k: int) -> Run:
    """The top ``k`` of each query in trec_eval's order (:func:`ranked`)."""
    return {qid: dict(ranked(docs)[:k]) for qid, docs in run.items()}


def write_run(run: Run, path: str | Path, tag: str, depth: int | None = None) -> None:
    """Write ``run`` atomically, queries sorted by id, each cut to ``depth`` (all when None)."""
    with atomic_file(path) as fh:
        for qid in sorted(run):
            for rank, (did, score) in enumerate(ranked(run[qid])[:depth], start=1):
                fh.write(f"{qid} Q0 {did} {rank} {float(score)!r} {tag}\n")


def read_run(path: str | Path, allow_empty: bool = False) -> Run:
    """Read a TREC run; malformed lines are reported with their number.

    Scores must be finite (NaN and +-inf have no place in a ranking), and a run must hold at least
    one line: an empty run would score 0 on every query without a word -- unless ``allow_empty``
    (a tuned system that abstained on every query of a split answered nothing, by design).
    """
    run: Run = {}
    for no, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        cols = line.split()
        if len(cols) != 6:
            raise InputError(
                f"expected 6 columns (qid Q0 docid rank score tag), got {len(cols)}",
                path=path,
                record=f"line {no}",
                fix="write TREC run lines",
            )
        qid, _, did, _, score, _ = cols
        try:
            value = float(score)
        except ValueError:
            raise InputError(
                f"score {score!r} is not a number", path=path, record=f"line {no}", fix="the fifth column is the score"
            ) from None
        if not math.isfinite(value):
            raise InputError(
                f"score is {'NaN' if math.isnan(value) else score}",
                path=path,
                record=f"line {no}",
                fix="check the model that produced the run",
            )
        if did in run.get(qid, {}):
            raise InputError(f"doc {did} appears twice for query {qid}", path=path, record=f"line {no}", fix="one line per (query, doc)")
        run.setdefault(qid, {})[did] = value
    if not run and not allow_empty:
        raise InputError(
            "empty run file (no result lines)",
            path=path,
            fix="rerun the stage that writes it (dvc repro); a run needs one line per retrieved doc",
        )
    return run
