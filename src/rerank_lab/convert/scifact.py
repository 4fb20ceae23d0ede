"""The ``scifact_rationales`` format: SciFact's original release, claims with sentence-level evidence."""

from __future__ import annotations

from pathlib import Path

from rerank_lab.config import ConvertConfig
from rerank_lab.convert.common import Converted, carve_missing, document, find_input, make_row, split_qrels
from rerank_lab.errors import InputError
from rerank_lab.io.qrels import Qrels
from rerank_lab.io.text import read_jsonl
from rerank_lab.schema import Document, Example, as_id, as_list, as_text


def _read_corpus(corpus_path: Path) -> dict[str, Document]:
    """The abstracts, pre-split into sentences as released."""
    corpus: dict[str, Document] = {}
    for no, obj in read_jsonl(corpus_path, required=("doc_id", "title", "abstract")):
        rec = f"line {no}"
        did = as_id(obj["doc_id"], "doc_id", path=corpus_path, record=rec)
        if did in corpus:
            raise InputError(f"duplicate doc_id {did!r}", path=corpus_path, record=rec, fix="doc ids must be unique")
        abstract = as_list(obj["abstract"], "abstract", path=corpus_path, record=rec)
        sentences = [as_text(s, f"abstract[{i}]", path=corpus_path, record=rec).strip() for i, s in enumerate(abstract)]
        if not sentences or not all(sentences):
            raise InputError(
                f"doc {did} has an empty abstract or sentence",
                path=corpus_path,
                record=f"line {no}",
                fix="every abstract sentence needs text",
            )
        corpus[did] = document(did, as_text(obj["title"], "title", path=corpus_path, record=rec).strip(), " ".join(sentences), sentences)
    return corpus


def convert_scifact_rationales(folder: Path, cfg: ConvertConfig) -> Converted:
    """Convert SciFact's claims with sentence-level evidence (train -> train/validation, dev -> test).

    The unlabelled ``claims_test`` file is not used: it has no evidence to learn or score.
    """
    corpus = _read_corpus(find_input(folder, "corpus.jsonl"))
    splits: dict[str, list[Example]] = {}
    qrels: Qrels = {}
    noinfo = 0
    seen: dict[str, str] = {}
    for stem, split in (("claims_train.jsonl", "train"), ("claims_dev.jsonl", "test")):
        path = find_input(folder, stem)
        rows = []
        for no, obj in read_jsonl(path, required=("id", "claim", "evidence", "cited_doc_ids")):
            rec = f"line {no}"
            qid, claim = as_id(obj["id"], "id", path=path, record=rec), as_text(obj["claim"], "claim", path=path, record=rec).strip()
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
                        indices = ev["sentences"]
                        # int() would take 1.5 as sentence 1 and "1" as 1; an index is a JSON integer
                        if not isinstance(indices, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
                            raise TypeError
                        evidence.setdefault(as_id(did, "evidence doc id", path=path, record=rec), set()).update(indices)
            except (AttributeError, KeyError, TypeError, ValueError):
                raise InputError(
                    f"claim {qid} has malformed evidence",
                    path=path,
                    record=f"line {no}",
                    fix='write "evidence": {"<doc_id>": [{"sentences": [0, 1], "label": "SUPPORT"}]}',
                ) from None
            cited = [
                as_id(d, "cited doc id", path=path, record=rec)
                for d in as_list(obj["cited_doc_ids"], "cited_doc_ids", path=path, record=rec)
            ]
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
            row = make_row(qid, claim, docs, [int(d["id"] in evidence) for d in docs])
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
    splits = carve_missing(splits, qrels, cfg)
    return Converted(splits, list(corpus.values()), split_qrels(qrels, splits), {"noinfo_claims": noinfo})
