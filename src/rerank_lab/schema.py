"""The data contract: one context-relevance dataset and one corpus, validated on every read and write.

A **context-relevance dataset** (Open Provence's layout) has one row per query:

============================  =====================================================================
column                        meaning
============================  =====================================================================
``id``                        query id, unique across all splits
``query``                     query text, not empty
``texts``                     candidate passages (positives from qrels; negatives appended by mine)
``text_ids``                  per text: the corpus doc id it came from (or ``h:<hash>`` for texts
                              that have no corpus, e.g. triplets)
``context_spans``             per text: ``[start, end)`` character offsets of its sentences
``labels``                    per text: 1 if relevant, else 0
``context_spans_relevance``   optional; per text, per span: 1 if the sentence is evidence
``teacher_scores.<name>``     optional; per text: a float score from teacher ``<name>``
============================  =====================================================================

It is saved with :meth:`datasets.DatasetDict.save_to_disk` (splits ``train``, ``validation``,
``test``). A **corpus** (``id, title, text, context_spans``) backs retrieval; its spans lie in
:func:`passage_text`, the string every retriever and reranker sees.

**Ids** (query ids, doc ids, ``text_ids``) are one token each: not empty, no white space, no
control characters -- they become columns of the TREC run and qrels files this tool writes, and
one space in an id would shift every column after it (:func:`id_problem`). Every reader of an
input file takes its ids through :func:`as_id` and its text fields through :func:`as_text`, so a
``null``, a number or a list where a string belongs is refused where it is read, with its line.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypedDict

import datasets

from rerank_lab.errors import InputError

SPLITS = ("train", "validation", "test")
TEACHER_PREFIX = "teacher_scores."

_SPANS = datasets.Sequence(datasets.Sequence(datasets.Sequence(datasets.Value("int32"), length=2)))

DATASET_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "query": datasets.Value("string"),
        "texts": datasets.Sequence(datasets.Value("string")),
        "text_ids": datasets.Sequence(datasets.Value("string")),
        "context_spans": _SPANS,
        "labels": datasets.Sequence(datasets.Value("int8")),
    }
)
OPTIONAL_FEATURES = {
    "context_spans_relevance": datasets.Sequence(datasets.Sequence(datasets.Value("int8"))),
}
TEACHER_FEATURE = datasets.Sequence(datasets.Value("float32"))

CORPUS_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "text": datasets.Value("string"),
        "context_spans": datasets.Sequence(datasets.Sequence(datasets.Value("int32"), length=2)),
    }
)


class Example(TypedDict, total=False):
    """One row of a context-relevance dataset (the optional keys may be absent)."""

    id: str
    query: str
    texts: list[str]
    text_ids: list[str]
    context_spans: list[list[list[int]]]
    labels: list[int]
    context_spans_relevance: list[list[int]]


class Document(TypedDict):
    """One corpus document; ``context_spans`` index into ``passage_text(title, text)``."""

    id: str
    title: str
    text: str
    context_spans: list[list[int]]


# white space (what str.split() splits on), C0/C1 control characters and lone surrogates
_BAD_ID_CHAR = re.compile(r"[\s\x00-\x1f\x7f-\x9f\ud800-\udfff]")
ID_FIX = "ids are single tokens: replace white space and control characters (e.g. with _) in the file and in every file that names the id"


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be an id, or None when it can.

    >>> id_problem("MED-10") is None
    True
    >>> id_problem("doc 7")
    "contains white space (' ' at position 3)"
    >>> id_problem("d\\x00")
    "contains a control character ('\\\\x00' at position 1)"
    >>> id_problem("")
    'is empty'
    """
    if not value:
        return "is empty"
    m = _BAD_ID_CHAR.search(value)
    if m is None:
        return None
    kind = "white space" if m.group().isspace() else "a control character"
    return f"contains {kind} ({m.group()!r} at position {m.start()})"


def _shown(value: object) -> str:
    """A JSON value as the user wrote it, for an error message: ``null``, ``a list ["a"]``, ``a number 3``."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    text = text if len(text) <= 40 else text[:37] + "..."
    if value is None or isinstance(value, bool):
        return text
    kind = {str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)
    return f"{kind} {text}"


def as_id(value: object, what: str, *, path: str | Path | None = None, record: str | None = None) -> str:
    """An id read from an input file: a string (or an integer, as SciFact writes them) that is one
    token once surrounding white space is stripped; anything else is an :class:`InputError`.

    >>> as_id(" d1 ", "document id"), as_id(42, "claim id")
    ('d1', '42')
    >>> as_id(None, "_id", path="corpus.jsonl", record="line 3")
    Traceback (most recent call last):
    ...
    rerank_lab.errors.InputError: corpus.jsonl: line 3: _id must be a string, got null (fix: ...)
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InputError(
            f"{what} must be a string, got {_shown(value)}", path=path, record=record, fix=f'write the {what} as a string, e.g. "d1"'
        )
    text = str(value).strip()
    problem = id_problem(text)
    if problem:
        fix = f"give every record a {what}" if not text else ID_FIX
        raise InputError(f"{what} {text!r} {problem}" if text else f"empty {what}", path=path, record=record, fix=fix)
    return text


def as_text(value: object, what: str, *, path: str | Path | None = None, record: str | None = None) -> str:
    """A text field read from an input file: a string, never ``null``, a number, a list or an object
    (which ``str()`` would silently turn into ``"None"`` or a Python repr).

    >>> as_text("Aspirin.", "text")
    'Aspirin.'
    >>> as_text(["a", "b"], "title", path="corpus.jsonl", record="line 2")
    Traceback (most recent call last):
    ...
    rerank_lab.errors.InputError: corpus.jsonl: line 2: title must be a string, got a list ["a", "b"] (fix: ...)
    """
    if not isinstance(value, str):
        raise InputError(
            f"{what} must be a string, got {_shown(value)}",
            path=path,
            record=record,
            fix=f'write the {what} as one JSON string ("" when there is none)' if value is None else f"write the {what} as one JSON string",
        )
    return value


def as_list(value: object, what: str, *, path: str | Path | None = None, record: str | None = None) -> list:
    """A list field read from an input file; a string is refused rather than iterated by character.

    >>> as_list("1", "cited_doc_ids", record="line 4")
    Traceback (most recent call last):
    ...
    rerank_lab.errors.InputError: line 4: cited_doc_ids must be a list, got a string "1" (fix: ...)
    """
    if not isinstance(value, list):
        raise InputError(
            f"{what} must be a list, got {_shown(value)}", path=path, record=record, fix=f"write {what} as a JSON list, e.g. [...]"
        )
    return value


def passage_text(title: str, text: str) -> str:
    """What retrievers and rerankers see for a document: BEIR's "title + ' ' + text".

    >>> passage_text("BM25", "A ranking function.")
    'BM25 A ranking function.'
    >>> passage_text("", "No title.")
    'No title.'
    """
    return f"{title} {text}" if title else text


def text_hash(text: str) -> str:
    """A stable id for a text without a corpus id: a hash of its normalised form.

    Normalising (case, white space) makes trivially different copies collide, which is what
    dedup wants to see.

    >>> text_hash("Hello  World") == text_hash(" hello world")
    True
    """
    norm = re.sub(r"\s+", " ", text).strip().lower()
    return "h:" + hashlib.sha1(norm.encode("utf-8")).hexdigest()[:16]


def dataset_features(columns: Iterable[str]) -> datasets.Features:
    """The Features for a dataset with these columns (core columns always first)."""
    feats = dict(DATASET_FEATURES)
    for col in columns:
        if col in feats:
            continue
        if col in OPTIONAL_FEATURES:
            feats[col] = OPTIONAL_FEATURES[col]
        elif col.startswith(TEACHER_PREFIX) and len(col) > len(TEACHER_PREFIX):
            feats[col] = TEACHER_FEATURE
        else:
            raise InputError(
                f"unknown column {col!r}",
                fix=f"columns are {', '.join(DATASET_FEATURES)}, {', '.join(OPTIONAL_FEATURES)} and {TEACHER_PREFIX}<name>",
            )
    return datasets.Features(feats)


def _check_spans(spans: Sequence[Sequence[int]], length: int, where: str, path: str | None) -> None:
    for span in spans:
        if len(span) != 2 or not 0 <= span[0] < span[1] <= length:
            raise InputError(
                f"span {list(span)} lies outside its text (length {length})",
                path=path,
                record=where,
                fix="spans are [start, end) character offsets with 0 <= start < end <= len(text)",
            )


def validate_example(row: Example, *, path: str | None = None, split: str = "") -> None:
    """Check one row against the contract; raise :class:`InputError` naming the record.

    >>> validate_example({"id": "q1", "query": "x", "texts": ["ab"], "text_ids": ["d1"],
    ...                   "context_spans": [[[0, 3]]], "labels": [1]})
    Traceback (most recent call last):
    ...
    rerank_lab.errors.InputError: record q1, text 0: span [0, 3] lies outside its text (length 2) (fix: ...)
    """
    rid = row.get("id")
    where = f"{split} " if split else ""
    if not rid:
        raise InputError("row without an id", path=path, record=f"{where}row", fix="give every row a unique id")
    if not isinstance(rid, str) or id_problem(rid):
        problem = id_problem(rid) if isinstance(rid, str) else f"is not a string ({type(rid).__name__})"
        raise InputError(f"row id {rid!r} {problem}", path=path, record=f"{where}row", fix=ID_FIX)
    where += f"record {rid}"
    query = row.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InputError("empty query text", path=path, record=where, fix="drop the query or give it text")
    texts = row["texts"]
    n = len(texts)
    per_text = ["text_ids", "context_spans", "labels"]
    per_text += [c for c in row if c == "context_spans_relevance" or c.startswith(TEACHER_PREFIX)]
    for col in per_text:
        if row.get(col) is None or len(row[col]) != n:
            got = "missing" if row.get(col) is None else f"{len(row[col])} entries"
            raise InputError(
                f"column {col!r} has {got} but there are {n} texts",
                path=path,
                record=where,
                fix="every per-text list must line up with 'texts'",
            )
    for i, (text, text_id, spans, label) in enumerate(zip(texts, row["text_ids"], row["context_spans"], row["labels"])):
        if not isinstance(text, str) or not text:
            raise InputError(f"text {i} is empty", path=path, record=where, fix="drop empty passages")
        problem = id_problem(text_id) if isinstance(text_id, str) else "is not a string"
        if problem:
            raise InputError(f"text id {text_id!r} of text {i} {problem}", path=path, record=where, fix=ID_FIX)
        if label not in (0, 1):
            raise InputError(f"label {label!r} of text {i} is not 0 or 1", path=path, record=where, fix="labels are binary")
        _check_spans(spans, len(text), f"{where}, text {i}", path)
        rel = row.get("context_spans_relevance")
        if rel is not None and len(rel[i]) != len(spans):
            raise InputError(
                f"text {i} has {len(spans)} spans but {len(rel[i])} span relevance values",
                path=path,
                record=where,
                fix="context_spans_relevance must line up with context_spans",
            )
    for col in per_text:
        if col.startswith(TEACHER_PREFIX):
            bad = [(i, x) for i, x in enumerate(row[col]) if not isinstance(x, int | float) or not math.isfinite(x)]
            if bad:
                raise InputError(
                    f"column {col!r} holds {bad[0][1]!r} for text {bad[0][0]}",
                    path=path,
                    record=where,
                    fix="teacher scores are finite numbers: rescore the texts or drop the column",
                )


def validate_dataset(dd: datasets.DatasetDict, path: str | None = None) -> None:
    """Validate every row of every split; ids must be unique across splits."""
    unknown = set(dd) - set(SPLITS)
    if unknown:
        raise InputError(f"unknown split(s) {sorted(unknown)}", path=path, fix=f"splits are {', '.join(SPLITS)}")
    seen: dict[str, str] = {}
    for split, ds in dd.items():
        missing = set(DATASET_FEATURES) - set(ds.column_names)
        if missing:
            raise InputError(f"split {split} lacks column(s) {sorted(missing)}", path=path, fix="write it with rerank-lab convert")
        dataset_features(ds.column_names)  # rejects unknown columns
        for row in ds:
            validate_example(row, path=path, split=split)
            if row["id"] in seen:
                raise InputError(
                    f"duplicate id {row['id']!r} (also in split {seen[row['id']]})",
                    path=path,
                    record=f"{split} record {row['id']}",
                    fix="query ids must be unique across splits",
                )
            seen[row["id"]] = split


def validate_corpus(corpus: datasets.Dataset, path: str | None = None) -> None:
    """Validate a corpus: at least one document, unique one-token ids, spans inside the passage text."""
    if len(corpus) == 0:
        raise InputError("the corpus has no documents", path=path, fix="convert a source whose corpus holds documents")
    seen: set[str] = set()
    for doc in corpus:
        did = doc["id"]
        if not did:
            raise InputError("document without an id", path=path, fix="give every document an id")
        problem = id_problem(did)
        if problem:
            raise InputError(f"document id {did!r} {problem}", path=path, record=f"doc {did!r}", fix=ID_FIX)
        if did in seen:
            raise InputError(f"duplicate document id {did!r}", path=path, record=f"doc {did}", fix="doc ids must be unique")
        seen.add(did)
        _check_spans(doc["context_spans"], len(passage_text(doc["title"], doc["text"])), f"doc {did}", path)


def to_dataset(rows: list[Example], columns: Iterable[str] | None = None) -> datasets.Dataset:
    """Build one split from rows with the contract's Features (empty splits keep their schema)."""
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else list(DATASET_FEATURES))
    feats = dataset_features(cols)
    data = {c: [r[c] for r in rows] for c in feats}
    return datasets.Dataset.from_dict(data, features=feats)


def to_corpus(docs: list[Document]) -> datasets.Dataset:
    """Build a corpus Dataset from documents."""
    data = {c: [d[c] for d in docs] for c in CORPUS_FEATURES}
    return datasets.Dataset.from_dict(data, features=CORPUS_FEATURES)
