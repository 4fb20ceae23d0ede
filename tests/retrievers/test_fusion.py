"""Fusion: RRF and weighted min-max sums worked out by hand; config errors."""

from __future__ import annotations

import pytest

from rerank_lab.errors import ConfigError
from rerank_lab.io.trec import ranked, read_run, write_run
from rerank_lab.retrieve import fuse_runs
from rerank_lab.retrievers.fusion import RRF, WeightedFusion

# run 1 ranks a, b, c; run 2 ranks b, d (no ties anywhere)
RUN1 = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"x": 10.0, "y": 4.0, "z": 2.0}}
RUN2 = {"q1": {"b": 0.9, "d": 0.5}, "q2": {"y": 0.8, "x": 0.6}}


def test_rrf_hand_computed():
    fused = RRF(k0=60).fuse([RUN1, RUN2])
    assert fused["q1"] == pytest.approx({"a": 1 / 61, "b": 1 / 62 + 1 / 61, "c": 1 / 63, "d": 1 / 62}, rel=1e-12)
    assert fused["q2"] == pytest.approx({"x": 1 / 61 + 1 / 62, "y": 1 / 62 + 1 / 61, "z": 1 / 63}, rel=1e-12)
    assert [d for d, _ in ranked(fused["q1"])] == ["b", "a", "d", "c"]


def test_rrf_k0_changes_the_constant():
    fused = RRF(k0=1).fuse([RUN1, RUN2])
    assert fused["q1"] == pytest.approx({"a": 1 / 2, "b": 1 / 3 + 1 / 2, "c": 1 / 4, "d": 1 / 3}, rel=1e-12)


def test_weighted_min_max_hand_computed():
    fused = WeightedFusion(runs=("bm25", "dense"), weights=(0.7, 0.3), norm="min-max").fuse([RUN1, RUN2])
    # q1 run 1 min-max: a 1, b 0.5, c 0; run 2: b 1, d 0
    assert fused["q1"] == pytest.approx({"a": 0.7, "b": 0.7 * 0.5 + 0.3 * 1, "c": 0.0, "d": 0.0}, abs=1e-12)
    # q2 run 1: x 1, y (4-2)/(10-2) = 0.25, z 0; run 2: y 1, x 0
    assert fused["q2"] == pytest.approx({"x": 0.7, "y": 0.7 * 0.25 + 0.3, "z": 0.0}, abs=1e-12)
    assert [d for d, _ in ranked(fused["q1"])] == ["a", "b", "d", "c"]  # c and d tie at 0: trec_eval puts d first


def test_weights_decide_the_winner():
    fused = WeightedFusion(weights=(0.2, 0.8)).fuse([RUN1, RUN2])
    assert fused["q1"] == pytest.approx({"a": 0.2, "b": 0.2 * 0.5 + 0.8, "c": 0.0, "d": 0.0}, abs=1e-12)
    assert ranked(fused["q1"])[0][0] == "b"


def test_query_missing_from_one_run_is_still_fused():
    """A query one retriever found nothing for (bm25s drops zero-score hits) is an empty ranking there."""
    only2 = {"q1": RUN1["q1"]}
    rrf = RRF().fuse([only2, RUN2])
    assert rrf["q2"] == pytest.approx({"y": 1 / 61, "x": 1 / 62}, rel=1e-12)
    weighted = WeightedFusion(weights=(0.7, 0.3)).fuse([only2, RUN2])
    assert weighted["q2"] == pytest.approx({"y": 0.3, "x": 0.0}, abs=1e-12)
    assert weighted["q1"] == pytest.approx({"a": 0.7, "b": 0.65, "c": 0.0, "d": 0.0}, abs=1e-12)


def test_fuse_runs_writes_every_split(tmp_path):
    for name, run in (("bm25", {"q1": RUN1["q1"]}), ("dense", RUN2)):
        write_run(run, tmp_path / name / "test.trec", tag=name)
    assert fuse_runs(RRF(), [tmp_path / "bm25", tmp_path / "dense"], depth=2, out=tmp_path / "rrf", tag="rrf") == ["test"]
    fused = read_run(tmp_path / "rrf" / "test.trec")
    assert fused["q1"] == pytest.approx({"b": 1 / 62 + 1 / 61, "a": 1 / 61}, rel=1e-12)  # depth 2
    assert fused["q2"] == pytest.approx({"y": 1 / 61, "x": 1 / 62}, rel=1e-12)


def test_weights_and_runs_length_mismatch():
    expected = r"weights: must list one weight per run \(2 runs\), got \[0\.2, 0\.3, 0\.5\] \(fix: give one weight per run\)"
    with pytest.raises(ConfigError, match=expected):
        WeightedFusion(runs=("bm25", "dense"), weights=(0.2, 0.3, 0.5))


def test_unknown_norm():
    with pytest.raises(ConfigError, match=r"norm: unknown value, got 'l2' \(fix: use one of: min-max, max, sum, zmuv, rank, borda\)"):
        WeightedFusion(norm="l2")
