"""Shared by the ``triplets`` and ``hardneg`` formats: their input files, and grouping (query, text)
records into one row per distinct query. Ids are text hashes: these formats carry no ids."""

from __future__ import annotations

from pathlib import Path

from rerank_lab.config import ConvertConfig
from rerank_lab.convert.common import Converted, carve_missing, document, make_row, split_qrels
from rerank_lab.errors import InputError
from rerank_lab.io.qrels import Qrels
from rerank_lab.schema import Document, Example, text_hash


def input_files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The file itself, or every file in the folder ending in one of ``suffixes`` (sorted)."""
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(suffixes))
    if not files:
        raise InputError(f"no {'/'.join(suffixes)} files in the folder", path=path, fix="put the input files in this folder")
    return files


class Grouper:
    """Groups (query, text, label[, score]) records into one row per distinct query."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, dict] = {}
        self.docs: dict[str, Document] = {}

    def add(self, no: int, query: str, text: str, label: int, score: float | None = None) -> None:
        query, text = query.strip(), text.strip()
        if not query:
            raise InputError("empty query text", path=self.path, record=f"line {no}", fix="drop the record or give it a query")
        if not text:
            raise InputError("empty passage", path=self.path, record=f"line {no}", fix="drop the record or give it a passage")
        qid = text_hash(query)
        did = text_hash(text)
        row = self.rows.setdefault(qid, {"query": query, "texts": {}, "scores": {}})
        if did not in self.docs:
            self.docs[did] = document(did, "", text)
        if did not in row["texts"] or label > row["texts"][did]:
            row["texts"][did] = label
        if score is not None:
            row["scores"][did] = score

    def converted(self, cfg: ConvertConfig, teacher: str | None = None) -> Converted:
        rows: list[Example] = []
        qrels: Qrels = {}
        for qid in sorted(self.rows):
            entry = self.rows[qid]
            dids = sorted(entry["texts"], key=lambda d: (-entry["texts"][d], d))
            row = make_row(qid, entry["query"], [self.docs[d] for d in dids], [entry["texts"][d] for d in dids])
            if teacher is not None:
                row[f"teacher_scores.{teacher}"] = [float(entry["scores"][d]) for d in dids]
            rows.append(row)
            qrels[qid] = {d: 1 for d in dids if entry["texts"][d]}
        splits = carve_missing({"train": rows}, qrels, cfg)
        return Converted(splits, [self.docs[d] for d in sorted(self.docs)], split_qrels(qrels, splits))
