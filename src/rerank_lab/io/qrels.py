"""Qrels in BEIR's TSV layout (``query-id<TAB>corpus-id<TAB>score`` with that header).

Graded scores are kept as they are: evaluation uses the grades (nDCG), while the dataset's
``labels`` are ``grade > 0``.
"""

from __future__ import annotations

from pathlib import Path

from rerank_lab.errors import InputError
from rerank_lab.io.atomic import atomic_file
from rerank_lab.io.text import read_lines

Qrels = dict[str, dict[str, int]]
HEADER = ("query-id", "corpus-id", "score")


def read_qrels(path: str | Path) -> Qrels:
    """Read a BEIR qrels TSV; every malformed line is reported with its number."""
    qrels: Qrels = {}
    lines = read_lines(path)
    if not lines:
        raise InputError("empty qrels file", path=path, fix=f"the first line is the header {'<TAB>'.join(HEADER)}")
    header = tuple(c.strip() for c in lines[0].split("\t"))
    if header != HEADER:
        raise InputError(
            f"wrong qrels header {lines[0]!r}",
            path=path,
            record="line 1",
            fix=f"the first line must be {'<TAB>'.join(HEADER)} (BEIR layout)",
        )
    for no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.rstrip("\r").split("\t")
        if len(cols) != 3:
            raise InputError(
                f"expected 3 tab-separated columns, got {len(cols)}",
                path=path,
                record=f"line {no}",
                fix="write query-id<TAB>corpus-id<TAB>score",
            )
        qid, did, score = (c.strip() for c in cols)
        try:
            grade = int(score)
        except ValueError:
            raise InputError(
                f"score {score!r} is not an integer", path=path, record=f"line {no}", fix="relevance grades are integers"
            ) from None
        if not qid or not did:
            raise InputError("empty query or corpus id", path=path, record=f"line {no}", fix="fill both ids")
        if did in qrels.get(qid, {}):
            raise InputError(f"pair ({qid}, {did}) appears twice", path=path, record=f"line {no}", fix="keep one grade per pair")
        qrels.setdefault(qid, {})[did] = grade
    return qrels


def write_qrels(qrels: Qrels, path: str | Path) -> None:
    """Write qrels atomically, sorted by query id then doc id."""
    with atomic_file(path) as fh:
        fh.write("\t".join(HEADER) + "\n")
        for qid in sorted(qrels):
            for did in sorted(qrels[qid]):
                fh.write(f"{qid}\t{did}\t{qrels[qid][did]}\n")
