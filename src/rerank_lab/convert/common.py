"""What every format's reader shares: the :class:`Converted` result, corpus documents with spans,
one contract row per query, finding an input file, and carving missing splits from train."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from rerank_lab.config import ConvertConfig
from rerank_lab.errors import InputError
from rerank_lab.io.qrels import Qrels
from rerank_lab.schema import Document, Example, passage_text
from rerank_lab.sentences import sentence_spans
from rerank_lab.splits import carve_split


@dataclasses.dataclass
class Converted:
    """What convert produces: rows per split, the corpus, graded qrels per split, counts."""

    splits: dict[str, list[Example]]
    corpus: list[Document]
    qrels: dict[str, Qrels]
    notes: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Format:
    """A registered input format: its reader, and -- for a reader of one folder -- which folder to
    give it (``None``: it reads a file, or every input file of a folder)."""

    read: Callable[[Path, ConvertConfig], Converted]
    folder: str | None = None


def document(doc_id: str, title: str, body: str, sentences: list[str] | None = None) -> Document:
    """A corpus document with spans: the title (if any), then the body's sentences.

    ``sentences`` gives the body pre-split (SciFact); they are joined with one space, as BEIR does.

    >>> d = document("7", "Title", "One. Two.")
    >>> t = passage_text(d["title"], d["text"]); [t[s:e] for s, e in d["context_spans"]]
    ['Title', 'One.', 'Two.']
    """
    offset = len(title) + 1 if title else 0
    spans: list[list[int]] = [[0, len(title)]] if title else []
    if sentences is None:
        spans += [list(s) for s in sentence_spans(body, offset=offset)]
    else:
        pos = offset
        for sent in sentences:
            spans.append([pos, pos + len(sent)])
            pos += len(sent) + 1
    return {"id": doc_id, "title": title, "text": body, "context_spans": spans}


def make_row(qid: str, query: str, docs: list[Document], labels: list[int]) -> Example:
    """One contract row: the query and its judged documents, in the order given."""
    return {
        "id": qid,
        "query": query,
        "texts": [passage_text(d["title"], d["text"]) for d in docs],
        "text_ids": [d["id"] for d in docs],
        "context_spans": [d["context_spans"] for d in docs],
        "labels": labels,
    }


def find_input(folder: Path, stem: str) -> Path:
    """``folder/stem``, or else ``folder/stem.gz``; an error naming both when neither is there."""
    for name in (stem, stem + ".gz"):
        if (folder / name).exists():  # a directory of that name is reported by the reader as one
            return folder / name
    raise InputError(f"missing {stem}[.gz]", path=folder, fix=f"put {stem} (or {stem}.gz) in the folder")


def carve_missing(splits: dict[str, list[Example]], qrels: Qrels, cfg: ConvertConfig) -> dict[str, list[Example]]:
    """Fill missing validation/test splits from train, by group of queries sharing a judged
    document (:mod:`rerank_lab.splits`), seeded."""
    train = splits.get("train", [])
    for name, fraction, maximum, salt in (
        ("validation", cfg.validation_fraction, cfg.validation_max, 1),
        ("test", cfg.test_fraction, cfg.test_max, 2),
    ):
        if splits.get(name) or not train:
            continue
        chosen = carve_split([r["id"] for r in train], fraction, maximum, cfg.seed * 1000 + salt, qrels)
        splits[name] = [r for r in train if r["id"] in chosen]
        train = [r for r in train if r["id"] not in chosen]
    splits["train"] = train
    return splits


def split_qrels(qrels: Qrels, splits: dict[str, list[Example]]) -> dict[str, Qrels]:
    """The qrels of each split's queries."""
    return {s: {r["id"]: qrels[r["id"]] for r in rows if r["id"] in qrels} for s, rows in splits.items()}
