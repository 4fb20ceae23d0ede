"""TREC run files: exact float round trip, pinned order, depth, byte-stable output."""

from __future__ import annotations

import numpy as np
import pytest

from rerank_lab.errors import InputError
from rerank_lab.io.trec import ranked, ranked_scores, read_run, truncate, write_run

AWKWARD = {
    "third": 1 / 3,
    "tenth": 0.1,
    "tiny": 5e-324,  # smallest subnormal
    "huge": 1.7976931348623157e308,
    "neg": -2.5,
    "long": 123456789.12345679,
    "f32": float(np.float32(0.1)),  # 0.10000000149011612, what bm25s/dense scores look like
    "zero": 0.0,
}


def test_round_trip_is_exact(tmp_path):
    run = {"q1": AWKWARD, "q2": {"d": np.float64(2) / 3}}
    write_run(run, tmp_path / "run.trec", tag="t")
    back = read_run(tmp_path / "run.trec")
    assert back == {"q1": AWKWARD, "q2": {"d": 2 / 3}}
    assert all(back["q1"][d] == v for d, v in AWKWARD.items())  # == on floats: bit-exact
    assert all(type(v) is float for docs in back.values() for v in docs.values())


def test_file_layout_and_pinned_order(tmp_path):
    run = {"q2": {"b": 1.0, "a": 1.0, "c": 2.0, "z": 0.5}, "q1": {"x": 0.25}, "q10": {"y": 3.0}}
    write_run(run, tmp_path / "run.trec", tag="bm25")
    assert (tmp_path / "run.trec").read_text() == (
        "q1 Q0 x 1 0.25 bm25\n"
        "q10 Q0 y 1 3.0 bm25\n"  # queries sorted as strings
        "q2 Q0 c 1 2.0 bm25\n"  # score descending ...
        "q2 Q0 b 2 1.0 bm25\n"  # ... ties by doc id descending, as trec_eval ranks them
        "q2 Q0 a 3 1.0 bm25\n"
        "q2 Q0 z 4 0.5 bm25\n"
    )


def test_depth_cuts_each_query(tmp_path):
    run = {"q1": {"a": 1.0, "b": 3.0, "c": 2.0, "d": 2.0}, "q2": {"e": 1.0}}
    write_run(run, tmp_path / "run.trec", tag="t", depth=2)
    assert read_run(tmp_path / "run.trec") == {"q1": {"b": 3.0, "d": 2.0}, "q2": {"e": 1.0}}
    write_run(run, tmp_path / "all.trec", tag="t", depth=None)
    assert read_run(tmp_path / "all.trec") == run


def test_same_ranking_gives_same_bytes(tmp_path):
    a = {"q1": {"a": 1.0, "b": 2.0, "c": 1.0}, "q2": {"x": 0.5}}
    b = {"q2": {"x": 0.5}, "q1": {"c": 1.0, "b": 2.0, "a": 1.0}}  # other insertion orders
    write_run(a, tmp_path / "a.trec", tag="t")
    write_run(b, tmp_path / "b.trec", tag="t")
    assert (tmp_path / "a.trec").read_bytes() == (tmp_path / "b.trec").read_bytes()


def test_query_without_docs_writes_no_lines(tmp_path):
    write_run({"q1": {}, "q2": {"a": 1.0}}, tmp_path / "run.trec", tag="t")
    assert (tmp_path / "run.trec").read_text() == "q2 Q0 a 1 1.0 t\n"


def test_ranked_and_truncate():
    assert ranked({"b": 1.0, "a": 1.0, "c": 2.0}) == [("c", 2.0), ("b", 1.0), ("a", 1.0)]
    assert truncate({"q": {"b": 1.0, "a": 1.0, "c": 2.0}, "r": {}}, 2) == {"q": {"c": 2.0, "b": 1.0}, "r": {}}


def test_ranked_scores_encode_the_order_without_ties():
    assert ranked(ranked_scores(["d2", "d10", "d1"])) == [("d2", 3.0), ("d10", 2.0), ("d1", 1.0)]


# Ten docs in three tie groups; the relevant doc sits inside a tie group that the cut splits.
TIED = {"d01": 3.0, "d07": 3.0, "d03": 2.0, "d10": 2.0, "d05": 2.0, "d02": 2.0, "d09": 1.0, "d04": 1.0, "d08": 1.0, "d06": 1.0}


def _trec_eval_rank_of(run: dict[str, float], doc: str) -> int:
    """Where trec_eval itself ranks ``doc``: the first k whose P@k counts it (an independent probe)."""
    import pytrec_eval

    ks = range(1, len(run) + 1)
    res = pytrec_eval.RelevanceEvaluator({"q": {doc: 1}}, {f"P.{k}" for k in ks}).evaluate({"q": run})["q"]
    return next(k for k in ks if res[f"P_{k}"] > 0)


def test_ranked_is_trec_eval_s_own_order():
    order = [d for d, _ in ranked(TIED)]
    assert order == ["d07", "d01", "d10", "d05", "d03", "d02", "d09", "d08", "d06", "d04"]
    for position, doc in enumerate(order, start=1):
        assert _trec_eval_rank_of(TIED, doc) == position, doc


@pytest.mark.parametrize("depth", [1, 3, 4, 5, 7])
def test_a_tie_laden_run_cut_at_depth_evaluates_as_the_full_run(tmp_path, depth):
    """What write_run cuts is exactly what trec_eval ranks at the top: every metric at k <= depth
    is the same for the cut run as for the full one, whichever doc of a tie group is relevant."""
    import pytrec_eval

    measures = {f"ndcg_cut.{k}" for k in range(1, depth + 1)} | {f"P.{k}" for k in range(1, depth + 1)}
    for relevant in TIED:
        qrels = {"q": {relevant: 1}}
        write_run({"q": TIED}, tmp_path / "cut.trec", tag="t", depth=depth)
        cut = read_run(tmp_path / "cut.trec")
        full = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate({"q": TIED})["q"]
        assert pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(cut)["q"] == full, relevant
        assert cut == truncate({"q": TIED}, depth)


def test_read_ignores_blank_lines_and_the_rank_column(tmp_path):
    (tmp_path / "run.trec").write_text("q1 Q0 a 7 0.5 x\n\nq1 Q0 b 1 0.75 x\n")
    assert read_run(tmp_path / "run.trec") == {"q1": {"a": 0.5, "b": 0.75}}


@pytest.mark.parametrize(
    "line,match",
    [
        ("q1 Q0 a 1 0.5", r"run\.trec: line 1: expected 6 columns"),
        ("q1 Q0 a 1 high x", r"line 1: score 'high' is not a number"),
        ("q1 Q0 a 1 nan x", r"line 1: score is NaN"),
    ],
)
def test_malformed_lines_are_named(tmp_path, line, match):
    (tmp_path / "run.trec").write_text(line + "\n")
    with pytest.raises(InputError, match=match):
        read_run(tmp_path / "run.trec")


def test_duplicate_doc_is_named(tmp_path):
    (tmp_path / "run.trec").write_text("q1 Q0 a 1 0.5 x\nq1 Q0 a 2 0.4 x\n")
    with pytest.raises(InputError, match=r"line 2: doc a appears twice for query q1"):
        read_run(tmp_path / "run.trec")
