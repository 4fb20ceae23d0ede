"""The score table: every (run, split, query, doc) pair a reranker scored, with its raw score.

``score`` writes it next to the reranked runs (``scores.tsv``); ``tune`` reads the head scores
from it -- a reranked run file encodes only the order the system answers with.
"""

from __future__ import annotations

import math
from pathlib import Path

from rerank_lab.errors import InputError
from rerank_lab.io.atomic import write_text
from rerank_lab.io.text import read_lines
from rerank_lab.io.trec import Run, ranked

HEADER = ("run", "split", "query_id", "doc_id", "score")
Scores = dict[tuple[str, str], Run]  # (run, split) -> {query id: {doc id: raw score}}


def write_scores(scores: Scores, path: str | Path) -> None:
    """Write the table atomically: runs and splits in the given order, queries sorted, docs ranked.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "scores.tsv"
    >>> write_scores({("bm25", "test"): {"q1": {"d1": 0.5, "d2": 1.5}}}, p)
    >>> p.read_text().splitlines()[1:]
    ['bm25\\ttest\\tq1\\td2\\t1.5', 'bm25\\ttest\\tq1\\td1\\t0.5']
    >>> read_scores(p) == {("bm25", "test"): {"q1": {"d1": 0.5, "d2": 1.5}}}
    True
    """
    lines = ["\t".join(HEADER)]
    for (run, split), table in scores.items():
        lines += [f"{run}\t{split}\t{q}\t{d}\t{float(s)!r}" for q in sorted(table) for d, s in ranked(table[q])]
    write_text(path, "\n".join(lines) + "\n")


def read_scores(path: str | Path) -> Scores:
    """Read the table; malformed lines are reported with their number."""
    lines = read_lines(path)
    if not lines or tuple(lines[0].split("\t")) != HEADER:
        raise InputError("not a score table", path=path, record="line 1", fix=f"the header is {'<TAB>'.join(HEADER)}; rerun score")
    out: Scores = {}
    for no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split("\t")
        try:
            if len(cols) != len(HEADER):
                raise ValueError
            value = float(cols[4])
            if not math.isfinite(value):
                raise ValueError
        except ValueError:
            raise InputError(
                f"expected run, split, query, doc and a finite score, got {line!r}", path=path, record=f"line {no}", fix="rerun score"
            ) from None
        docs = out.setdefault((cols[0], cols[1]), {}).setdefault(cols[2], {})
        if cols[3] in docs:
            raise InputError(f"pair ({cols[2]}, {cols[3]}) appears twice", path=path, record=f"line {no}", fix="rerun score")
        docs[cols[3]] = value
    return out
