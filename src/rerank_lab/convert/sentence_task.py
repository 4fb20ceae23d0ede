"""Sentence mode (``task.unit: sentences``): the candidates of a query are the sentences of the
documents attached to it, gold = its evidence sentences.

A document-level conversion with sentence evidence (``context_spans_relevance``: SciFact's
original release) becomes, query by query and split by split (the grouped carving is kept):

* one text per body sentence of each attached document, id ``<doc id>#<k>`` (``k`` counts body
  sentences from 0, as SciFact's evidence indices do; the title is not a candidate);
* with ``task.context: c``, a candidate's text is its sentence with ``c`` neighbouring sentences of
  the same document on each side; its one context span marks the sentence itself;
* ``labels`` and the span relevance: 1 for an evidence sentence, else 0; graded qrels judge every
  candidate (1 / 0), so a claim without evidence (NOINFO) stays a known no-evidence query;
* the corpus: every sentence of every attached document (what retrieval scores, scoped per query
  to the query's own candidates by the retrieve stage).
"""

from __future__ import annotations

from rerank_lab.convert.common import Converted
from rerank_lab.errors import InputError
from rerank_lab.io.qrels import Qrels
from rerank_lab.schema import Document, Example

SEPARATOR = "#"


def sentence_id(doc_id: str, k: int) -> str:
    """The id of body sentence ``k`` of ``doc_id``.

    >>> sentence_id("4983", 2)
    '4983#2'
    """
    return f"{doc_id}{SEPARATOR}{k}"


def body_sentences(doc: Document) -> list[str]:
    """A corpus document's body sentences (its spans less the title's), as the texts they cover."""
    text = f"{doc['title']} {doc['text']}" if doc["title"] else doc["text"]
    spans = doc["context_spans"][1:] if doc["title"] else doc["context_spans"]
    return [text[s:e] for s, e in spans]


def window(sentences: list[str], k: int, context: int) -> tuple[str, list[int]]:
    """Sentence ``k`` with ``context`` neighbours a side, and the span of sentence ``k`` in it.

    >>> window(["A.", "Bb.", "C."], 1, 1)
    ('A. Bb. C.', [3, 6])
    >>> window(["A.", "Bb.", "C."], 0, 1)
    ('A. Bb.', [0, 2])
    >>> window(["A.", "Bb.", "C."], 2, 0)
    ('C.', [0, 2])
    """
    before = sentences[max(0, k - context) : k]
    start = sum(len(s) + 1 for s in before)
    text = " ".join([*before, *sentences[k : k + context + 1]])
    return text, [start, start + len(sentences[k])]


def to_sentences(conv: Converted, context: int, source: str) -> Converted:
    """``conv`` with sentences as candidates (see the module text). ``source`` names the
    ``convert.sources`` entry in the error a conversion without sentence evidence gets."""
    rows_with_gold = [r for rows in conv.splits.values() for r in rows]
    if not rows_with_gold or any("context_spans_relevance" not in r for r in rows_with_gold):
        raise InputError(
            "task.unit sentences needs sentence-level evidence (context_spans_relevance), which this source does not give",
            path=f"convert.sources.{source}",
            fix="use a scifact_rationales source, or set task.unit: documents",
        )
    docs = {d["id"]: d for d in conv.corpus}
    sentences = {d: body_sentences(docs[d]) for d in dict.fromkeys(t for r in rows_with_gold for t in r["text_ids"])}
    splits: dict[str, list[Example]] = {}
    qrels: dict[str, Qrels] = {}
    for split, rows in conv.splits.items():
        splits[split], qrels[split] = [], {}
        for row in rows:
            out: Example = {"id": row["id"], "query": row["query"], "texts": [], "text_ids": [], "context_spans": [], "labels": []}
            out["context_spans_relevance"] = []
            for doc_id, relevance in zip(row["text_ids"], row["context_spans_relevance"]):
                body = sentences[doc_id]
                gold = relevance[len(relevance) - len(body) :]  # the title's span (if any) comes first
                for k, label in enumerate(gold):
                    text, span = window(body, k, context)
                    out["texts"].append(text)
                    out["text_ids"].append(sentence_id(doc_id, k))
                    out["context_spans"].append([span])
                    out["labels"].append(int(label))
                    out["context_spans_relevance"].append([int(label)])
            splits[split].append(out)
            qrels[split][row["id"]] = dict(zip(out["text_ids"], out["labels"]))
    corpus: list[Document] = []
    for doc_id, body in sentences.items():
        for k in range(len(body)):
            text, span = window(body, k, context)
            corpus.append({"id": sentence_id(doc_id, k), "title": "", "text": text, "context_spans": [span]})
    notes = {**conv.notes, "documents_attached": len(sentences), "context_sentences": context}
    return Converted(splits, corpus, qrels, notes)
