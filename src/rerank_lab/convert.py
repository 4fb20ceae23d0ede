"""convert: four input formats -> one context-relevance dataset, a corpus and graded qrels.

========================  ===================================================================
format                    input
========================  ===================================================================
``beir``                  a BEIR folder: ``corpus.jsonl[.gz]``, ``queries.jsonl[.gz]``,
                          ``qrels/{train,dev,test}.tsv`` (graded scores kept in the qrels)
``triplets``              sentence-transformers triplets: ``query<TAB>positive<TAB>negative``
                          TSV, or JSONL with ``query/positive/negative`` (or ``anchor``)
``hardneg``               FlagEmbedding JSONL ``{query, pos, neg, pos_scores, neg_scores}``;
                          the scores become the ``teacher_scores.<teacher_name>`` column
``scifact_rationales``    SciFact's original release: ``claims_{train,dev}.jsonl[.gz]`` and
                          ``corpus.jsonl[.gz]`` with sentence-level evidence; texts are the
                          cited abstracts, ``context_spans_relevance`` marks gold sentences,
                          NOINFO claims are kept with every label 0
========================  ===================================================================

Every text's first span is its title (when it has one), then its sentences. Missing splits are
carved from train by group of queries sharing a judged document, with a seed (Open Provence: 1%, at
most 5,000; SciFact's dev split is set larger in params), never from test.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Callable
from pathlib import Path

import datasets

from rerank_lab.config import ConvertConfig
from rerank_lab.drops import check_drop
from rerank_lab.errors import InputError, unknown_name
from rerank_lab.io.atomic import atomic_dir, write_text
from rerank_lab.io.datasets import save_corpus, save_dataset
from rerank_lab.io.qrels import Qrels, read_qrels, write_qrels
from rerank_lab.io.text import read_jsonl, read_lines
from rerank_lab.schema import Document, Example, passage_text, text_hash, to_corpus, to_dataset
from rerank_lab.sentences import sentence_spans
from rerank_lab.splits import carve_split, sharing_with

BEIR_SPLIT_NAMES = {"train": "train", "dev": "validation", "validation": "validation", "test": "test"}


@dataclasses.dataclass
class Converted:
    """What convert produces: rows per split, the corpus, graded qrels per split, counts."""

    splits: dict[str, list[Example]]
    corpus: list[Document]
    qrels: dict[str, Qrels]
    notes: dict[str, int] = dataclasses.field(default_factory=dict)


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


def _row(qid: str, query: str, docs: list[Document], labels: list[int]) -> Example:
    return {
        "id": qid,
        "query": query,
        "texts": [passage_text(d["title"], d["text"]) for d in docs],
        "text_ids": [d["id"] for d in docs],
        "context_spans": [d["context_spans"] for d in docs],
        "labels": labels,
    }


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise InputError(f"missing {stem}[.gz]", path=folder, fix=f"put {stem} (or {stem}.gz) in the folder")


def _carve_missing(splits: dict[str, list[Example]], qrels: Qrels, cfg: ConvertConfig) -> dict[str, list[Example]]:
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


def _split_qrels(qrels: Qrels, splits: dict[str, list[Example]]) -> dict[str, Qrels]:
    return {s: {r["id"]: qrels[r["id"]] for r in rows if r["id"] in qrels} for s, rows in splits.items()}


# --- BEIR ---------------------------------------------------------------------------------


def _read_beir_corpus(path: Path) -> dict[str, Document]:
    corpus: dict[str, Document] = {}
    for no, obj in read_jsonl(path, required=("_id", "text")):
        did = str(obj["_id"]).strip()
        title = str(obj.get("title") or "").strip()
        body = str(obj["text"] or "").strip()
        if not did:
            raise InputError("empty _id", path=path, record=f"line {no}", fix="give every document an id")
        if did in corpus:
            raise InputError(f"duplicate document id {did!r}", path=path, record=f"line {no}", fix="document ids must be unique")
        if not (title or body):
            raise InputError(f"document {did!r} has no title and no text", path=path, record=f"line {no}", fix="drop the empty document")
        corpus[did] = document(did, title, body)
    return corpus


def _read_queries(path: Path, id_key: str, text_key: str) -> dict[str, str]:
    queries: dict[str, str] = {}
    for no, obj in read_jsonl(path, required=(id_key, text_key)):
        qid = str(obj[id_key]).strip()
        text = str(obj[text_key] or "").strip()
        if not qid:
            raise InputError(f"empty {id_key}", path=path, record=f"line {no}", fix="give every query an id")
        if qid in queries:
            raise InputError(f"duplicate query id {qid!r}", path=path, record=f"line {no}", fix="query ids must be unique")
        if not text:
            raise InputError(f"empty query text for query {qid!r}", path=path, record=f"line {no}", fix="give the query text or drop it")
        queries[qid] = text
    return queries


def convert_beir(folder: Path, cfg: ConvertConfig) -> Converted:
    """Convert a BEIR folder; every qrels split is kept, ``dev`` becomes ``validation``."""
    corpus = _read_beir_corpus(_find(folder, "corpus.jsonl"))
    queries = _read_queries(_find(folder, "queries.jsonl"), "_id", "text")
    qrel_files = sorted((folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
    if not qrel_files:
        raise InputError("no qrels/*.tsv files", path=folder, fix="a BEIR folder has qrels/train.tsv, qrels/dev.tsv or qrels/test.tsv")
    splits: dict[str, list[Example]] = {}
    all_qrels: Qrels = {}
    dropped = 0
    for qfile in qrel_files:
        split = BEIR_SPLIT_NAMES.get(qfile.stem)
        if split is None:
            raise InputError(f"unknown qrels split {qfile.stem!r}", path=qfile, fix="name qrels files train.tsv, dev.tsv or test.tsv")
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
            rows.append(_row(qid, queries[qid], [corpus[d] for d in order], [int(judged[d] > 0) for d in order]))
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
    splits = _carve_missing(splits, all_qrels, cfg)
    return Converted(splits, list(corpus.values()), _split_qrels(all_qrels, splits), {"qrels_docs_dropped": dropped})


# --- sentence-transformers triplets and FlagEmbedding hard negatives ----------------------------


def _input_files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The file itself, or every file in the folder ending in one of ``suffixes`` (sorted)."""
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(suffixes))
    if not files:
        raise InputError(f"no {'/'.join(suffixes)} files in the folder", path=path, fix="put the input files in this folder")
    return files


def _triplet_records(path: Path) -> list[tuple[int, str, str, str]]:
    if path.suffix == ".jsonl" or path.name.endswith(".jsonl.gz"):
        out = []
        for no, obj in read_jsonl(path):
            query = obj.get("query", obj.get("anchor"))
            if query is None or "positive" not in obj or "negative" not in obj:
                raise InputError(
                    "missing field(s): need query (or anchor), positive, negative",
                    path=path,
                    record=f"line {no}",
                    fix="write {query, positive, negative} objects",
                )
            out.append((no, str(query), str(obj["positive"]), str(obj["negative"])))
        return out
    lines = read_lines(path)
    if not any(line.strip() for line in lines):
        raise InputError("empty file", path=path, fix="one query<TAB>positive<TAB>negative per line")
    out = []
    for no, cols in enumerate(csv.reader(io.StringIO("\n".join(lines)), delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
        if not cols:
            continue
        if len(cols) != 3:
            raise InputError(
                f"expected 3 tab-separated columns, got {len(cols)}",
                path=path,
                record=f"line {no}",
                fix="write query<TAB>positive<TAB>negative",
            )
        out.append((no, *cols))
    return out


class _Grouper:
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
            row = _row(qid, entry["query"], [self.docs[d] for d in dids], [entry["texts"][d] for d in dids])
            if teacher is not None:
                row[f"teacher_scores.{teacher}"] = [float(entry["scores"][d]) for d in dids]
            rows.append(row)
            qrels[qid] = {d: 1 for d in dids if entry["texts"][d]}
        splits = _carve_missing({"train": rows}, qrels, cfg)
        return Converted(splits, [self.docs[d] for d in sorted(self.docs)], _split_qrels(qrels, splits))


def convert_triplets(path: Path, cfg: ConvertConfig) -> Converted:
    """Convert (query, positive, negative) triplets; rows group the triplets of one query."""
    group = _Grouper(path)
    for file in _input_files(path, (".tsv", ".jsonl", ".jsonl.gz", ".tsv.gz")):
        group.path = file
        for no, query, pos, neg in _triplet_records(file):
            group.add(no, query, pos, 1)
            group.add(no, query, neg, 0)
    return group.converted(cfg)


def _hardneg_record(file: Path, no: int, obj: dict, group: _Grouper) -> None:
    pos, neg = obj["pos"], obj["neg"]
    if not isinstance(pos, list) or not isinstance(neg, list) or not pos:
        raise InputError(
            "pos must be a non-empty list and neg a list", path=file, record=f"line {no}", fix='write "pos": ["..."], "neg": ["..."]'
        )
    has_scores = "pos_scores" in obj or "neg_scores" in obj
    pos_s = obj.get("pos_scores") if has_scores else [None] * len(pos)
    neg_s = obj.get("neg_scores") if has_scores else [None] * len(neg)
    if not isinstance(pos_s, list) or not isinstance(neg_s, list) or len(pos_s) != len(pos) or len(neg_s) != len(neg):
        raise InputError(
            "pos_scores/neg_scores do not line up with pos/neg",
            path=file,
            record=f"line {no}",
            fix="give one score per passage in both lists, or no scores at all",
        )
    if has_scores and not all(isinstance(s, int | float) and not isinstance(s, bool) for s in [*pos_s, *neg_s]):
        raise InputError("pos_scores/neg_scores must be numbers", path=file, record=f"line {no}", fix="write one number per passage")
    for texts, scores, label in ((pos, pos_s, 1), (neg, neg_s, 0)):
        for text, score in zip(texts, scores):
            group.add(no, str(obj["query"]), str(text), label, score)


def convert_hardneg(path: Path, cfg: ConvertConfig) -> Converted:
    """Convert FlagEmbedding hard-negative JSONL; pos/neg scores become a teacher column."""
    group = _Grouper(path)
    for file in _input_files(path, (".jsonl", ".jsonl.gz")):
        group.path = file
        for no, obj in read_jsonl(file, required=("query", "pos", "neg")):
            _hardneg_record(file, no, obj, group)
    scored = all(len(r["scores"]) == len(r["texts"]) for r in group.rows.values())
    return group.converted(cfg, teacher=cfg.teacher_name if scored else None)


# --- SciFact rationales ------------------------------------------------------------------------


def convert_scifact_rationales(folder: Path, cfg: ConvertConfig) -> Converted:
    """Convert SciFact's claims with sentence-level evidence (train -> train/validation, dev -> test).

    The unlabelled ``claims_test`` file is not used: it has no evidence to learn or score.
    """
    corpus_path = _find(folder, "corpus.jsonl")
    corpus: dict[str, Document] = {}
    for no, obj in read_jsonl(corpus_path, required=("doc_id", "title", "abstract")):
        did = str(obj["doc_id"])
        if did in corpus:
            raise InputError(f"duplicate doc_id {did!r}", path=corpus_path, record=f"line {no}", fix="doc ids must be unique")
        sentences = [str(s).strip() for s in obj["abstract"]]
        if not sentences or not all(sentences):
            raise InputError(
                f"doc {did} has an empty abstract or sentence",
                path=corpus_path,
                record=f"line {no}",
                fix="every abstract sentence needs text",
            )
        corpus[did] = document(did, str(obj["title"]).strip(), " ".join(sentences), sentences)
    splits: dict[str, list[Example]] = {}
    qrels: Qrels = {}
    noinfo = 0
    seen: dict[str, str] = {}
    for stem, split in (("claims_train.jsonl", "train"), ("claims_dev.jsonl", "test")):
        path = _find(folder, stem)
        rows = []
        for no, obj in read_jsonl(path, required=("id", "claim", "evidence", "cited_doc_ids")):
            qid, claim = str(obj["id"]), str(obj["claim"]).strip()
            if not claim:
                raise InputError(f"empty claim text for claim {qid}", path=path, record=f"line {no}", fix="give the claim text")
            if qid in seen:
                raise InputError(
                    f"duplicate claim id {qid} (also in {seen[qid]})", path=path, record=f"line {no}", fix="claim ids must be unique"
                )
            seen[qid] = path.name
            evidence: dict[str, set[int]] = {}
            try:
                for did, sets in obj["evidence"].items():
                    for ev in sets:
                        evidence.setdefault(str(did), set()).update(int(i) for i in ev["sentences"])
            except (AttributeError, KeyError, TypeError, ValueError):
                raise InputError(
                    f"claim {qid} has malformed evidence",
                    path=path,
                    record=f"line {no}",
                    fix='write "evidence": {"<doc_id>": [{"sentences": [0, 1], "label": "SUPPORT"}]}',
                ) from None
            cited = [str(d) for d in obj["cited_doc_ids"]]
            for did in [*cited, *evidence]:
                if did not in corpus:
                    raise InputError(
                        f"claim {qid} names doc {did}, which the corpus lacks",
                        path=path,
                        record=f"line {no}",
                        fix="use the corpus released with these claims",
                    )
            if not set(evidence) <= set(cited):
                raise InputError(
                    f"claim {qid} has evidence in uncited docs",
                    path=path,
                    record=f"line {no}",
                    fix="evidence docs must be among cited_doc_ids",
                )
            docs = [corpus[d] for d in dict.fromkeys(cited)]
            row = _row(qid, claim, docs, [int(d["id"] in evidence) for d in docs])
            relevance = []
            for d in docs:
                title_spans = 1 if d["title"] else 0
                n_sent = len(d["context_spans"]) - title_spans
                gold = evidence.get(d["id"], set())
                bad = sorted(i for i in gold if not 0 <= i < n_sent)
                if bad:
                    raise InputError(
                        f"claim {qid}: sentence index {bad[0]} outside doc {d['id']} ({n_sent} sentences)",
                        path=path,
                        record=f"line {no}",
                        fix="sentence indices count from 0 within the abstract",
                    )
                relevance.append([0] * title_spans + [int(i in gold) for i in range(n_sent)])
            row["context_spans_relevance"] = relevance
            noinfo += not evidence
            # every cited abstract was judged: grade 1 with evidence, 0 without (NOINFO claims keep
            # their judged-0 lines, so later stages know them as queries of this dataset)
            qrels[qid] = {d: int(d in evidence) for d in sorted(dict.fromkeys(cited))}
            rows.append(row)
        splits[split] = rows
    splits = _carve_missing(splits, qrels, cfg)
    return Converted(splits, list(corpus.values()), _split_qrels(qrels, splits), {"noinfo_claims": noinfo})


FORMATS: dict[str, Callable[[Path, ConvertConfig], Converted]] = {
    "beir": convert_beir,
    "triplets": convert_triplets,
    "hardneg": convert_hardneg,
    "scifact_rationales": convert_scifact_rationales,
}


def convert(input_path: str | Path, cfg: ConvertConfig) -> Converted:
    """Convert ``input_path`` with the format named in ``cfg``."""
    if cfg.format not in FORMATS:
        raise unknown_name("format", cfg.format, list(FORMATS))
    path = Path(input_path)
    if not path.exists():
        raise InputError("input not found", path=path, fix="check the path in dvc.yaml")
    return FORMATS[cfg.format](path, cfg)


def summary(conv: Converted) -> dict[str, int]:
    """Counts per split for the metrics file, and how many validation/test queries share a judged
    document with a train query (0 for carved splits: they are carved by group)."""
    out: dict[str, int] = {"corpus_docs": len(conv.corpus), **conv.notes}
    judged = {q: docs for split in conv.qrels.values() for q, docs in split.items()}
    train = [r["id"] for r in conv.splits.get("train", [])]
    for split, rows in conv.splits.items():
        out[f"{split}_queries"] = len(rows)
        out[f"{split}_texts"] = sum(len(r["texts"]) for r in rows)
        out[f"{split}_positives"] = sum(sum(r["labels"]) for r in rows)
        if split != "train":
            out[f"{split}_queries_sharing_train_docs"] = sharing_with([r["id"] for r in rows], train, judged)
    return out


def write_converted(conv: Converted, out: str | Path) -> None:
    """Write ``dataset/``, ``corpus/`` and ``qrels/<split>.tsv`` under ``out``, all or nothing."""
    columns = sorted({c for rows in conv.splits.values() for r in rows for c in r}, key=lambda c: (c.count("."), c))
    # a split without rows is left out: datasets saves it without a shard and cannot load it back
    dd = datasets.DatasetDict({s: to_dataset(rows, columns) for s, rows in conv.splits.items() if rows})
    with atomic_dir(out) as tmp:
        save_dataset(dd, tmp / "dataset")
        save_corpus(to_corpus(conv.corpus), tmp / "corpus")
        for split, qrels in conv.qrels.items():
            write_qrels(qrels, tmp / "qrels" / f"{split}.tsv")
        write_text(tmp / "README.md", "Written by `rerank-lab convert`; see rerank_lab.schema for the layout.\n")
