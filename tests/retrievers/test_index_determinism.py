"""Index folders are DVC outputs: the same corpus must give the same bytes in any process.

Each index is built in a fresh interpreter with a different ``PYTHONHASHSEED`` (string hashing,
hence ``set`` order, differs between them), then the folders are compared file by file. Searching
must be unchanged by what makes them deterministic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rerank_lab.retrievers.bm25_bm25s import Bm25sBM25, sorted_vocab
from rerank_lab.retrievers.bm25_pyserini import PyseriniBM25, start_jvm

DOCS = {
    "d1": "Glaciers retreat as the climate warms and sea levels rise.",
    "d2": "Photosynthesis converts sunlight into chemical energy inside plant leaves.",
    "d3": "Quantum chromodynamics describes how quarks and gluons interact.",
    "d4": "Vaccines train the immune system to recognise viral proteins.",
    "d5": "Coral reefs bleach when ocean temperatures stay high for weeks.",
    "d6": "Migratory birds navigate using the magnetic field of the earth.",
}
QUERIES = {"q1": "melting glaciers and rising seas", "q2": "how do leaves use sunlight", "q3": "immune response to viruses"}
BUILD = """
import json, sys
from pathlib import Path
from rerank_lab.retrievers.bm25_bm25s import Bm25sBM25
from rerank_lab.retrievers.bm25_pyserini import PyseriniBM25
docs = json.loads(sys.argv[2])
{"bm25s": Bm25sBM25(), "pyserini": PyseriniBM25(threads=1)}[sys.argv[1]].index(list(docs), list(docs.values()), Path(sys.argv[3]))
"""


def _build_in_subprocess(backend: str, out: Path, hash_seed: str) -> None:
    out.mkdir(parents=True)
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    subprocess.run([sys.executable, "-c", BUILD, backend, json.dumps(DOCS), str(out)], env=env, check=True, capture_output=True)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("backend", ["bm25s", "pyserini"])
def test_index_is_byte_identical_across_processes(backend, tmp_path):
    _build_in_subprocess(backend, tmp_path / "a", hash_seed="1")
    _build_in_subprocess(backend, tmp_path / "b", hash_seed="2")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a  # something was written
    assert sorted(a) == sorted(b)
    assert [name for name in a if a[name] != b[name]] == []


def test_bm25s_sorted_vocab_changes_no_score(tmp_path):
    """bm25s' own numbering (set order) and the sorted one score every doc identically, bit for bit."""
    import bm25s

    retriever = Bm25sBM25()
    tokens = retriever._tokenize(list(DOCS.values()))
    plain, renumbered = bm25s.BM25(k1=0.9, b=0.4, method="lucene"), bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    plain.index(tokens, show_progress=False)
    renumbered.index(sorted_vocab(tokens), show_progress=False)
    assert [t for t in renumbered.vocab_dict if t] == sorted(t for t in renumbered.vocab_dict if t)
    for query in QUERIES.values():
        q = retriever._tokenize([query])
        inverse = {i: t for t, i in q.vocab.items()}
        terms = [inverse[i] for i in q.ids[0]]
        assert np.array_equal(plain.get_scores(terms), renumbered.get_scores(terms))


def test_bm25s_search_reads_the_sorted_index(tmp_path):
    retriever = Bm25sBM25()
    retriever.index(list(DOCS), list(DOCS.values()), tmp_path)
    vocab = json.loads((tmp_path / "bm25s" / "vocab.index.json").read_text())
    terms = [t for t in vocab if t]  # bm25s appends an empty token of its own after ours
    assert terms == sorted(terms) and list(vocab.values()) == list(range(len(vocab)))
    run = retriever.search(tmp_path, QUERIES, 2)
    assert [max(run[q], key=run[q].get) for q in ("q1", "q2")] == ["d1", "d2"]


def test_pyserini_scores_as_a_lucene_index_built_directly(tmp_path):
    """Building the Lucene index from the collection file at search time gives the hits and scores
    of an index built straight from the corpus (what the index stage used to write)."""
    retriever = PyseriniBM25(threads=1)
    (tmp_path / "collection").mkdir()
    retriever.index(list(DOCS), list(DOCS.values()), tmp_path / "collection")
    got = retriever.search(tmp_path / "collection", QUERIES, 10)

    start_jvm()
    from pyserini.index.lucene import LuceneIndexer
    from pyserini.search.lucene import LuceneSearcher

    indexer = LuceneIndexer(str(tmp_path / "lucene"), threads=1)
    for did, text in DOCS.items():
        indexer.add_doc_dict({"id": did, "contents": text})
    indexer.close()
    searcher = LuceneSearcher(str(tmp_path / "lucene"))
    searcher.set_bm25(0.9, 0.4)
    direct = {qid: {h.docid: float(h.score) for h in searcher.search(text, k=10)} for qid, text in QUERIES.items()}
    searcher.close()
    assert got == direct
    assert all(got[q] for q in QUERIES)  # every query matched something: the comparison is not vacuous
