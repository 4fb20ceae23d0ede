"""evaluate's paired comparison of every run with a baseline run."""

from __future__ import annotations

import pytest

from rerank_lab.config import EvaluateConfig
from rerank_lab.errors import ConfigError
from rerank_lab.evaluate import compare_to_baseline
from rerank_lab.stats import paired_bootstrap, randomization_test

# per-query nDCG@10 of two runs on 6 test queries; "ce" beats "bm25" by 0.1 on five, loses 0.05 on one
BASE = {f"q{i}": v for i, v in enumerate([0.5, 0.6, 0.2, 0.9, 0.4, 0.3])}
BETTER = {"q0": 0.6, "q1": 0.7, "q2": 0.3, "q3": 0.85, "q4": 0.5, "q5": 0.4}


def _rows() -> list:
    return [("bm25", "test", q, {"ndcg@10": v}) for q, v in BASE.items()] + [("ce", "test", q, {"ndcg@10": v}) for q, v in BETTER.items()]


def test_every_other_run_gets_a_paired_comparison() -> None:
    summary = {"bm25": {"test": {"ndcg@10": 0.483333}}, "ce": {"test": {"ndcg@10": 0.558333}}}
    compare_to_baseline(summary, _rows(), "bm25", "ndcg@10", n_resamples=2000, seed=3)
    sig = summary["ce"]["test"]["vs_bm25"]
    assert "vs_bm25" not in summary["bm25"]["test"]
    assert sig["delta"] == pytest.approx((5 * 0.1 - 0.05) / 6, abs=1e-6)  # 0.075
    assert sig["ci_low"] <= sig["delta"] <= sig["ci_high"]
    # 6 queries: all 2^6 sign flips are enumerated. |sum| >= 0.45 needs the five 0.1s with one
    # sign (the 0.05 either way: 0.45 or 0.55), and the mirror images: 4 of 64 -> p = 0.0625
    assert sig["p_randomization"] == pytest.approx(4 / 64, abs=1e-6)
    assert sig["p_bootstrap"] == pytest.approx(paired_bootstrap(BASE, BETTER, 2000, 0.95, 3)["p_value"], abs=1e-6)
    assert sig["p_randomization"] == pytest.approx(randomization_test(BASE, BETTER, 2000, 3)["p_value"], abs=1e-6)


def test_unknown_baseline_lists_the_runs() -> None:
    with pytest.raises(ConfigError, match=r"baseline run 'dense' was not evaluated .*bm25, ce"):
        compare_to_baseline({"bm25": {}, "ce": {}}, _rows(), "dense", "ndcg@10")


def test_significance_metric_must_be_evaluated() -> None:
    with pytest.raises(ConfigError, match="significance_metric 'map@10' is not among evaluate.metrics"):
        EvaluateConfig(metrics=("ndcg@10",), baseline="bm25", significance_metric="map@10")
