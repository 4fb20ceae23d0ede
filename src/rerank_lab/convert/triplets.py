"""The ``triplets`` format: sentence-transformers (query, positive, negative) triplets, as TSV or JSONL."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from rerank_lab.config import ConvertConfig
from rerank_lab.convert.common import Converted
from rerank_lab.convert.grouper import Grouper, input_files
from rerank_lab.errors import InputError
from rerank_lab.io.text import read_jsonl, read_lines
from rerank_lab.schema import as_text

log = logging.getLogger(__name__)

# the column names a triplets TSV header may use (sentence-transformers' and pandas' exports)
TRIPLET_HEADER = (("query", "anchor"), ("positive", "pos"), ("negative", "neg"))


def _is_header(cols: list[str]) -> bool:
    return len(cols) == 3 and all(c.strip().lower() in names for c, names in zip(cols, TRIPLET_HEADER))


def _triplet_records(path: Path) -> list[tuple[int, str, str, str]]:
    if path.suffix == ".jsonl" or path.name.endswith(".jsonl.gz"):
        out = []
        for no, obj in read_jsonl(path):
            key = "query" if "query" in obj else "anchor"
            if key not in obj or "positive" not in obj or "negative" not in obj:
                raise InputError(
                    "missing field(s): need query (or anchor), positive, negative",
                    path=path,
                    record=f"line {no}",
                    fix="write {query, positive, negative} objects",
                )
            fields = [as_text(obj[k], k, path=path, record=f"line {no}") for k in (key, "positive", "negative")]
            out.append((no, *fields))
        return out
    lines = read_lines(path)
    if not any(line.strip() for line in lines):
        raise InputError("empty file", path=path, fix="one query<TAB>positive<TAB>negative per line")
    out = []
    first = next(no for no, line in enumerate(lines, start=1) if line.strip())
    header = False
    for no, cols in enumerate(csv.reader(io.StringIO("\n".join(lines)), delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
        if not cols:
            continue
        if _is_header(cols):
            # a header names the columns (pandas writes one): skipped on the first line, where it is
            # expected; anywhere else it is two files pasted together, and its "query" would become a row
            if no == first:
                header = True
                continue
            raise InputError(
                "a header row in the middle of the file (files pasted together?)",
                path=path,
                record=f"line {no}",
                fix="delete the line: only the first line may name the columns",
            )
        if len(cols) != 3:
            raise InputError(
                f"expected 3 tab-separated columns, got {len(cols)}",
                path=path,
                record=f"line {no}",
                fix="write query<TAB>positive<TAB>negative",
            )
        out.append((no, *cols))
    if header:
        if not out:
            raise InputError("a header row and no triplets", path=path, fix="one query<TAB>positive<TAB>negative per line after the header")
        log.info("%s: line %d names the columns (a header row); skipped", path, first)
    return out


def convert_triplets(path: Path, cfg: ConvertConfig) -> Converted:
    """Convert (query, positive, negative) triplets; rows group the triplets of one query."""
    group = Grouper(path)
    for file in input_files(path, (".tsv", ".jsonl", ".jsonl.gz", ".tsv.gz")):
        group.path = file
        for no, query, pos, neg in _triplet_records(file):
            group.add(no, query, pos, 1)
            group.add(no, query, neg, 0)
    return group.converted(cfg)
