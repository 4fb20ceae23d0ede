"""Scoped search (sentence mode): a query ranks only its own candidates, with the scores the
whole index gives them (corpus statistics unchanged), through the retrieve stage's own path.
Every retriever scopes: bm25s and dense by masking their score arrays, pyserini by Lucene's
query-document score (a real JVM; float32, so equal to the search's score to 1e-6)."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from rerank_lab.errors import InputError
from rerank_lab.io.datasets import save_dataset
from rerank_lab.io.trec import read_run
from rerank_lab.retrieve import configure_retrieve, run_retriever, search
from rerank_lab.retrievers.bm25_bm25s import Bm25sBM25
from rerank_lab.retrievers.bm25_pyserini import PyseriniBM25
from rerank_lab.retrievers.dense import DenseRetriever
from rerank_lab.schema import to_dataset

CORPUS = {
    "a#0": "Glaciers retreat as the climate warms.",
    "a#1": "Ice sheets lose mass every summer.",
    "a#2": "Sea level rises with melting glaciers.",
    "b#0": "Glaciers carve valleys over millennia.",
    "b#1": "Rivers carry sediment from glaciers to the sea.",
    "c#0": "Quarks and gluons interact strongly.",
}
QUERIES = {"q1": "why do glaciers melt", "q2": "glaciers and the sea"}
SCOPE = {"q1": ["a#0", "a#1", "a#2"], "q2": ["b#0", "b#1", "c#0"]}
RETRIEVERS = {"bm25s": Bm25sBM25(), "dense": DenseRetriever(), "pyserini": PyseriniBM25(threads=1, tie_break="trec_eval")}


@pytest.fixture(scope="module", params=sorted(RETRIEVERS))
def indexed(request, tmp_path_factory) -> tuple[object, Path]:
    retriever = RETRIEVERS[request.param]
    out = tmp_path_factory.mktemp(f"index-{request.param}")
    retriever.index(list(CORPUS), list(CORPUS.values()), out)
    return retriever, out


def test_a_scoped_query_ranks_only_its_candidates_with_the_whole_index_scores(indexed):
    retriever, index = indexed
    everything = search(retriever, index, QUERIES, depth=len(CORPUS))
    scoped = search(retriever, index, QUERIES, depth=len(CORPUS), scope=SCOPE)
    for qid, hits in scoped.items():
        assert set(hits) <= set(SCOPE[qid])
        expected = {d: s for d, s in everything[qid].items() if d in SCOPE[qid]}
        if isinstance(retriever, PyseriniBM25):
            assert list(hits) == list(expected) and hits == pytest.approx(expected, rel=1e-6)
        else:
            assert hits == expected
    # a glacier sentence of the other document outranks q1's own candidates unscoped
    assert set(everything["q1"]) - set(SCOPE["q1"])


def test_scoped_depth_cuts_within_the_candidates(indexed):
    retriever, index = indexed
    scoped = search(retriever, index, QUERIES, depth=1, scope=SCOPE)
    full = search(retriever, index, QUERIES, depth=len(CORPUS), scope=SCOPE)
    assert all(list(scoped[q]) == list(full[q])[:1] for q in QUERIES)


def test_a_candidate_missing_from_the_index_is_named(indexed):
    retriever, index = indexed
    with pytest.raises(InputError, match=r"query q1's candidate 'z#9' is not in the index"):
        search(retriever, index, {"q1": QUERIES["q1"]}, depth=3, scope={"q1": ["a#0", "z#9"]})


def test_the_stage_scopes_each_query_to_its_rows_texts(tmp_path):
    retriever = Bm25sBM25()
    retriever.index(list(CORPUS), list(CORPUS.values()), tmp_path / "index")
    rows = [
        {"id": q, "query": QUERIES[q], "texts": [CORPUS[t] for t in SCOPE[q]], "text_ids": SCOPE[q],
         "context_spans": [[[0, len(CORPUS[t])]] for t in SCOPE[q]], "labels": [1] + [0] * (len(SCOPE[q]) - 1)}
        for q in QUERIES
    ]  # fmt: skip
    save_dataset(datasets.DatasetDict({"test": to_dataset(rows)}), tmp_path / "dataset")
    run_retriever(retriever, tmp_path / "index", tmp_path / "dataset", ("test",), 10, tmp_path / "runs", tag="bm25s", scoped=True)
    run = read_run(tmp_path / "runs" / "test.trec")
    assert all(set(run[q]) <= set(SCOPE[q]) for q in QUERIES)


def _params(unit: str) -> dict:
    return {
        "task": {"unit": unit},
        "retrieve": {"depth": 10},
        "retrievers": {"bm25": {"type": "bm25-pyserini"}, "bm25s": {"type": "bm25-bm25s"}},
    }


def test_sentence_mode_scopes_the_retrieve_stage():
    assert configure_retrieve(_params("sentences"), "bm25", None)[-1] is True
    assert configure_retrieve(_params("documents"), "bm25", None)[-1] is False
    assert configure_retrieve({k: v for k, v in _params("documents").items() if k != "task"}, "bm25s", None)[-1] is False
