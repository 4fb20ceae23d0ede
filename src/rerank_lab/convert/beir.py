"""The ``beir`` format: a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``)."""

from __future__ import annotations

from pathlib import Path

from rerank_lab.config import ConvertConfig
from rerank_lab.convert.common import Converted, carve_missing, document, find_input, make_row, split_qrels
from rerank_lab.drops import check_drop
from rerank_lab.errors import InputError
from rerank_lab.io.qrels import Qrels, read_qrels, split_files
from rerank_lab.io.text import read_jsonl, read_lines
from rerank_lab.schema import Document, Example, as_id, as_text

BEIR_SPLIT_NAMES = {"train": "train", "dev": "validation", "validation": "validation", "test": "test"}


def _read_beir_corpus(path: Path) -> dict[str, Document]:
    corpus: dict[str, Document] = {}
    for no, obj in read_jsonl(path, required=("_id", "text")):
        rec = f"line {no}"
        did = as_id(obj["_id"], "_id", path=path, record=rec)
        title = as_text(obj.get("title", ""), "title", path=path, record=rec).strip()
        body = as_text(obj["text"], "text", path=path, record=rec).strip()
        if did in corpus:
            raise InputError(f"duplicate document id {did!r}", path=path, record=f"line {no}", fix="document ids must be unique")
        if not (title or body):
            raise InputError(f"document {did!r} has no title and no text", path=path, record=f"line {no}", fix="drop the empty document")
        corpus[did] = document(did, title, body)
    return corpus


def _read_queries(path: Path, id_key: str, text_key: str) -> dict[str, str]:
    queries: dict[str, str] = {}
    for no, obj in read_jsonl(path, required=(id_key, text_key)):
        qid = as_id(obj[id_key], id_key, path=path, record=f"line {no}")
        text = as_text(obj[text_key], text_key, path=path, record=f"line {no}").strip()
        if qid in queries:
            raise InputError(f"duplicate query id {qid!r}", path=path, record=f"line {no}", fix="query ids must be unique")
        if not text:
            raise InputError(f"empty query text for query {qid!r}", path=path, record=f"line {no}", fix="give the query text or drop it")
        queries[qid] = text
    return queries


def convert_beir(folder: Path, cfg: ConvertConfig) -> Converted:
    """Convert a BEIR folder; every qrels split is kept, ``dev`` becomes ``validation``."""
    corpus = _read_beir_corpus(find_input(folder, "corpus.jsonl"))
    queries = _read_queries(find_input(folder, "queries.jsonl"), "_id", "text")
    splits: dict[str, list[Example]] = {}
    all_qrels: Qrels = {}
    dropped = 0
    for split, qfile in split_files(folder / "qrels", BEIR_SPLIT_NAMES):
        qrels = read_qrels(qfile)
        lines: dict[tuple[str, str], int] = {}
        for no, line in enumerate(read_lines(qfile)[1:], start=2):
            cols = [c.strip() for c in line.split("\t")]
            if len(cols) == 3:
                lines.setdefault((cols[0], cols[1]), no)
        rows = []
        for qid, judged in qrels.items():
            if qid not in queries:
                raise InputError(
                    f"qrels name query {qid!r}, which queries.jsonl lacks",
                    path=qfile,
                    record=f"query {qid}",
                    fix="remove the line or add the query",
                )
            if qid in all_qrels:
                raise InputError(
                    f"query {qid!r} is judged in two splits", path=qfile, record=f"query {qid}", fix="splits must not share queries"
                )
            missing = [d for d in judged if d not in corpus]
            if missing and cfg.on_missing_doc == "error":
                raise InputError(
                    f"qrels name document {missing[0]!r}, which the corpus lacks",
                    path=qfile,
                    record=f"line {lines[(qid, missing[0])]}",
                    fix="fix the id, or set on_missing_doc: drop for this source in params.yaml",
                )
            dropped += len(missing)
            judged = {d: g for d, g in judged.items() if d in corpus}
            all_qrels[qid] = judged
            if not judged:
                continue
            order = sorted(judged, key=lambda d: (-judged[d], d))
            rows.append(make_row(qid, queries[qid], [corpus[d] for d in order], [int(judged[d] > 0) for d in order]))
        check_drop(
            len(qrels),
            len(rows),
            cfg.max_drop_fraction,
            stage="convert",
            split=split,
            key="convert.sources.<dataset>.max_drop_fraction",
            fix="check that the corpus is the one released with these qrels",
            path=str(qfile),
        )
        splits[split] = sorted(rows, key=lambda r: r["id"])
    splits = carve_missing(splits, all_qrels, cfg)
    return Converted(splits, list(corpus.values()), split_qrels(all_qrels, splits), {"qrels_docs_dropped": dropped})
