"""BM25 with both backends on a tiny corpus (pyserini starts a real JVM, once per session), and top_k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rerank_lab.io.trec import ranked
from rerank_lab.retrievers.base import top_k
from rerank_lab.retrievers.bm25_bm25s import Bm25sBM25
from rerank_lab.retrievers.bm25_pyserini import PyseriniBM25

# d5 and d0 are the same text; d5 is indexed first so that only the doc id can put d0 ahead
CORPUS = {
    "d1": "The cat sat on the mat in the sunny kitchen.",
    "d2": "Dogs chase cats around the park every morning.",
    "d3": "Quantum chromodynamics describes how quarks and gluons interact.",
    "d4": "Photosynthesis converts sunlight into chemical energy inside plant leaves.",
    "d5": "Identical twin passage about glaciers.",
    "d0": "Identical twin passage about glaciers.",
}
QUERIES = {
    "quarks": "quarks and gluons",
    "plants": "how do plant leaves use sunlight",
    "cats": "cat",
    "twins": "glaciers",
    "nothing": "zebra xylophone",  # no term in the corpus
    "stop": "the of and",  # stop words only
}
BACKENDS = {"bm25s": Bm25sBM25(), "pyserini": PyseriniBM25(threads=1)}


@pytest.fixture(scope="session")
def indexes(tmp_path_factory) -> dict[str, Path]:
    """Each backend indexes the corpus once per session (pyserini: one real JVM for the session)."""
    out = {}
    for name, retriever in BACKENDS.items():
        out[name] = tmp_path_factory.mktemp(f"index-{name}")
        retriever.index(list(CORPUS), list(CORPUS.values()), out[name])
    return out


@pytest.fixture(scope="session")
def searched(indexes) -> dict[str, dict]:
    """Every query searched to depth 10, once per backend."""
    return {name: BACKENDS[name].search(indexes[name], QUERIES, 10) for name in BACKENDS}


@pytest.fixture(params=list(BACKENDS))
def backend(request, indexes) -> tuple[str, object, Path]:
    return request.param, BACKENDS[request.param], indexes[request.param]


@pytest.fixture
def runs(backend, searched) -> dict:
    return searched[backend[0]]


def test_index_files(backend):
    name, _, index = backend
    expected = {"bm25s": {"bm25s", "doc_ids.json"}, "pyserini": {"lucene", "doc_count.json"}}[name]
    assert {p.name for p in index.iterdir()} == expected


def test_obvious_match_ranks_first(runs):
    assert ranked(runs["quarks"])[0][0] == "d3"
    assert ranked(runs["plants"])[0][0] == "d4"
    assert set(runs["quarks"]) == {"d3"}  # the only doc with either term


def test_stemming_matches_plural(runs):
    assert set(runs["cats"]) == {"d1", "d2"}  # "cat" also finds "cats"
    assert all(s > 0 for s in runs["cats"].values())


def test_every_query_has_an_entry(runs):
    assert set(runs) == set(QUERIES)


def test_no_match_returns_nothing(runs):
    assert runs["nothing"] == {}
    assert runs["stop"] == {}


def test_tie_broken_by_doc_id_not_index_order(backend):
    _, retriever, index = backend
    top1 = retriever.search(index, {"q": "glaciers"}, 1)
    assert list(top1["q"]) == ["d0"]
    both = retriever.search(index, {"q": "glaciers"}, 2)["q"]
    assert [d for d, _ in ranked(both)] == ["d0", "d5"]


def test_depth_is_respected(backend):
    _, retriever, index = backend
    query = {"q": "cat dogs quarks sunlight glaciers"}  # matches all six docs
    full = retriever.search(index, query, 10)["q"]
    assert len(full) == 6
    for depth in (1, 2, 3):
        hits = retriever.search(index, query, depth)["q"]
        assert len(hits) == depth
        assert hits == dict(ranked(full)[:depth])


def test_bm25s_drops_zero_scores(tmp_path):
    """bm25s scores every doc; only docs with a matching term (score > 0) are returned."""
    retriever = Bm25sBM25()
    retriever.index(list(CORPUS), list(CORPUS.values()), tmp_path)
    run = retriever.search(tmp_path, {"q": "quarks", "z": "zebra"}, depth=6)
    assert list(run["q"]) == ["d3"] and run["q"]["d3"] > 0  # depth 6 = every doc, yet only one is returned
    assert run["z"] == {}


def test_scores_are_python_floats(runs):
    assert all(type(s) is float for docs in runs.values() for s in docs.values())


@pytest.mark.parametrize("qid", sorted(QUERIES))
def test_backends_agree_on_top_doc_and_hit_set(searched, qid):
    a, b = searched["bm25s"][qid], searched["pyserini"][qid]
    assert set(a) == set(b)
    if a:
        assert ranked(a)[0][0] == ranked(b)[0][0]


# -- top_k ----------------------------------------------------------------------------------------


def test_top_k_ties_broken_by_doc_id():
    hits = top_k(np.array([1.0, 3.0, 3.0, 2.0]), np.array(["d", "c", "b", "a"]), 2)
    assert list(hits.items()) == [("b", 3.0), ("c", 3.0)]


def test_top_k_tie_across_the_cut_keeps_smallest_ids():
    hits = top_k(np.array([2.0, 2.0, 2.0, 5.0]), np.array(["z", "x", "y", "w"]), 3)
    assert list(hits.items()) == [("w", 5.0), ("x", 2.0), ("y", 2.0)]


def test_top_k_larger_than_n_returns_all_in_pinned_order():
    hits = top_k(np.array([1.0, 3.0, 3.0, 2.0]), np.array(["d", "c", "b", "a"]), 10)
    assert list(hits.items()) == [("b", 3.0), ("c", 3.0), ("a", 2.0), ("d", 1.0)]


def test_top_k_zero_and_empty():
    assert top_k(np.array([1.0, 2.0]), np.array(["a", "b"]), 0) == {}
    assert top_k(np.array([]), np.array([], dtype=str), 5) == {}


def test_top_k_values_are_python_floats():
    hits = top_k(np.array([0.1, 0.7], dtype=np.float64), np.array(["a", "b"]), 2)
    assert [type(v) for v in hits.values()] == [float, float]
    assert hits == {"b": 0.7, "a": 0.1}
