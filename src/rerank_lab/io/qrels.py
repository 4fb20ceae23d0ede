"""Qrels in BEIR's TSV layout (``query-id<TAB>corpus-id<TAB>score`` with that header).

Graded scores are kept as they are: evaluation uses the grades (nDCG), while the dataset's
``labels`` are ``grade > 0``. Ids are one token each (:func:`rerank_lab.schema.as_id`): an id
with a space would be split in two by every TREC tool that reads the run files made from it.
"""

from __future__ import annotations

import re
from pathlib import Path

from rerank_lab.errors import InputError
from rerank_lab.io.atomic import atomic_file
from rerank_lab.io.text import read_lines
from rerank_lab.schema import as_id

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
        if not re.fullmatch(r"-?[0-9]+", score):  # int() would also take "1_0" (ten) and "+1"
            raise InputError(f"score {score!r} is not an integer", path=path, record=f"line {no}", fix="relevance grades are integers")
        grade = int(score)
        if not qid or not did:
            raise InputError("empty query or corpus id", path=path, record=f"line {no}", fix="fill both ids")
        qid, did = as_id(qid, "query id", path=path, record=f"line {no}"), as_id(did, "corpus id", path=path, record=f"line {no}")
        if did in qrels.get(qid, {}):
            raise InputError(f"pair ({qid}, {did}) appears twice", path=path, record=f"line {no}", fix="keep one grade per pair")
        qrels.setdefault(qid, {})[did] = grade
    return qrels


def split_files(folder: Path, names: dict[str, str]) -> list[tuple[str, Path]]:
    """``(split, file)`` for each ``<name>.tsv[.gz]`` in ``folder`` (``names`` maps a file name to
    its split), in file name order.

    Names match in any case (``Test.TSV`` is test). An unknown file, or two files for one split
    (``dev.tsv`` and ``validation.tsv``), is an error: skipping either would silently leave a split
    to be carved from train. Hidden files (``.DS_Store``) are not data and are passed over.
    """
    fix = f"a qrels folder holds only <split>.tsv files, <split> one of {', '.join(names)}"
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir(), key=lambda p: (p.name.lower(), p.name)) if folder.is_dir() else []:
        if path.name.startswith("."):
            continue
        name = path.name.lower().removesuffix(".gz")
        split = names.get(name.removesuffix(".tsv")) if name.endswith(".tsv") and path.is_file() else None
        if split is None:
            raise InputError(
                f"unknown {'folder' if path.is_dir() else 'file'} {path.name!r} in qrels/", path=path, fix=f"move it out: {fix}"
            )
        if split in found:
            raise InputError(f"{found[split].name} and {path.name} both give the {split} split", path=folder, fix="keep one of them")
        found[split] = path
    if not found:
        raise InputError("no <split>.tsv qrels files", path=folder, fix=fix)
    return list(found.items())


def write_qrels(qrels: Qrels, path: str | Path) -> None:
    """Write qrels atomically, sorted by query id then doc id."""
    with atomic_file(path) as fh:
        fh.write("\t".join(HEADER) + "\n")
        for qid in sorted(qrels):
            for did in sorted(qrels[qid]):
                fh.write(f"{qid}\t{did}\t{qrels[qid][did]}\n")
