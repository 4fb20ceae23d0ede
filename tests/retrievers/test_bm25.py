"""BM25 with both backends on a tiny corpus (pyserini starts a real JVM, once per session), and top_k.

Ties: bm25s and pyserini with ``tie_break: trec_eval`` keep raw scores and cut a tie in trec_eval's
order (score descending, then doc id *descending*); pyserini's default (``anserini``) is pyserini's
own output, ties by doc id ascending with the scores nudged apart so that trec_eval ranks the run in
exactly that order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rerank_lab.errors import ConfigError
from rerank_lab.io.trec import ranked
from rerank_lab.retrievers.base import top_k
from rerank_lab.retrievers.bm25_bm25s import Bm25sBM25
from rerank_lab.retrievers.bm25_pyserini import PyseriniBM25

TWIN = "Identical twin passage about glaciers."
CORPUS = {
    "d0": TWIN,
    "d1": "The cat sat on the mat in the sunny kitchen.",
    "d2": "Dogs chase cats around the park every morning.",
    "d3": "Quantum chromodynamics describes how quarks and gluons interact.",
    "d4": "Photosynthesis converts sunlight into chemical energy inside plant leaves.",
    "d5": TWIN,
}
QUERIES = {
    "quarks": "quarks and gluons",
    "plants": "how do plant leaves use sunlight",
    "cats": "cat",
    "twins": "glaciers",
    "nothing": "zebra xylophone",  # no term in the corpus
    "stop": "the of and",  # stop words only
}
BACKENDS = {
    "bm25s": Bm25sBM25(),
    "pyserini": PyseriniBM25(threads=1),
    "pyserini-trec_eval": PyseriniBM25(threads=1, tie_break="trec_eval"),
}
RAW_TIES = ("bm25s", "pyserini-trec_eval")  # backends whose tied docs keep equal scores


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
    expected = {"bm25s": {"bm25s", "doc_ids.json"}}.get(name, {"docs.jsonl"})
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


@pytest.mark.parametrize("first", ["d0", "d5"])
def test_twin_order_follows_doc_ids_not_index_order(backend, first, tmp_path):
    """Two identical docs, indexed in either order: raw-score backends rank d5 (the larger id) first
    with equal scores; pyserini ranks d0 first and leaves d5 a strictly lower score."""
    name, retriever, _ = backend
    docs = {first: TWIN, "d1": CORPUS["d1"], ({"d0", "d5"} - {first}).pop(): TWIN}
    retriever.index(list(docs), list(docs.values()), tmp_path)
    expected = ["d5", "d0"] if name in RAW_TIES else ["d0", "d5"]
    both = retriever.search(tmp_path, {"q": "glaciers"}, 2)["q"]
    assert [d for d, _ in ranked(both)] == expected
    assert (both["d0"] == both["d5"]) == (name in RAW_TIES)
    assert list(retriever.search(tmp_path, {"q": "glaciers"}, 1)["q"]) == expected[:1]


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
    a, b, c = (searched[name][qid] for name in ("bm25s", "pyserini-trec_eval", "pyserini"))
    assert set(a) == set(b) == set(c)
    if a:
        assert ranked(a)[0][0] == ranked(b)[0][0]
        assert ranked(c)[0][0] == ("d0" if qid == "twins" else ranked(a)[0][0])  # pyserini: ties by doc id ascending


def test_pyserini_scores_differ_only_by_its_rounding(searched):
    """pyserini rounds to 1e-4 (then nudges ties by 1e-6); with trec_eval ties the scores are Lucene's own."""
    for qid in QUERIES:
        raw, adjusted = searched["pyserini-trec_eval"][qid], searched["pyserini"][qid]
        assert all(abs(raw[d] - adjusted[d]) < 6e-5 for d in raw)


def test_unknown_tie_break_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"tie_break: unknown value, got 'lucene' \(fix: use one of: anserini, trec_eval\)$"):
        PyseriniBM25(tie_break="lucene")


# -- a tie at the cut ------------------------------------------------------------------------------

SAME = "Glaciers retreat as the climate warms."
IDENTICAL = {f"d{i}": SAME for i in range(1, 6)}  # indexed d1..d5: Lucene's own tie order is d1, d2, ...


@pytest.mark.parametrize("name", list(BACKENDS))
def test_tie_at_the_cut_keeps_what_trec_eval_ranks_first(name, tmp_path):
    """Five identical documents tie on every query. Raw-score backends keep d5, d4 at depth 2 (what
    trec_eval ranks first among equal scores; Lucene's own top 2 would be d1, d2). pyserini's
    default keeps d1, d2 but scores them apart, so trec_eval ranks its run in that same order."""
    retriever = BACKENDS[name]
    retriever.index(list(IDENTICAL), list(IDENTICAL.values()), tmp_path)
    hits = retriever.search(tmp_path, {"q": "glaciers climate"}, 2)["q"]
    if name in RAW_TIES:
        assert [d for d, _ in ranked(hits)] == ["d5", "d4"]
        assert hits["d5"] == hits["d4"]
    else:
        assert [d for d, _ in ranked(hits)] == ["d1", "d2"]
        assert hits["d1"] > hits["d2"]


@pytest.mark.parametrize(("tie_break", "expected"), [("trec_eval", ["a", "t39", "t38"]), ("anserini", ["a", "t00", "t01"])])
def test_pyserini_fetches_deeper_until_the_tie_group_is_complete(tie_break, expected, tmp_path):
    """A tie group far longer than depth + 1 (40 docs): the search keeps doubling its depth."""
    retriever = PyseriniBM25(threads=1, tie_break=tie_break)
    docs = {f"t{i:02d}": SAME for i in range(40)} | {"a": "glaciers glaciers glaciers climate climate retreat"}
    retriever.index(list(docs), list(docs.values()), tmp_path)
    hits = retriever.search(tmp_path, {"q": "glaciers"}, 3)["q"]
    assert [d for d, _ in ranked(hits)] == expected


# -- top_k ----------------------------------------------------------------------------------------


def test_top_k_ties_broken_by_doc_id_descending():
    hits = top_k(np.array([1.0, 3.0, 3.0, 2.0]), np.array(["d", "b", "c", "a"]), 2)
    assert list(hits.items()) == [("c", 3.0), ("b", 3.0)]


def test_top_k_tie_across_the_cut_keeps_largest_ids():
    hits = top_k(np.array([2.0, 2.0, 2.0, 5.0]), np.array(["z", "x", "y", "w"]), 3)
    assert list(hits.items()) == [("w", 5.0), ("z", 2.0), ("y", 2.0)]


def test_top_k_larger_than_n_returns_all_in_trec_eval_order():
    hits = top_k(np.array([1.0, 3.0, 3.0, 2.0]), np.array(["d", "b", "c", "a"]), 10)
    assert list(hits.items()) == [("c", 3.0), ("b", 3.0), ("a", 2.0), ("d", 1.0)]


def test_top_k_zero_and_empty():
    assert top_k(np.array([1.0, 2.0]), np.array(["a", "b"]), 0) == {}
    assert top_k(np.array([]), np.array([], dtype=str), 5) == {}


def test_top_k_values_are_python_floats():
    hits = top_k(np.array([0.1, 0.7], dtype=np.float64), np.array(["a", "b"]), 2)
    assert [type(v) for v in hits.values()] == [float, float]
    assert hits == {"b": 0.7, "a": 0.1}
