"""answerability: the query score profile by hand, and the fitted model -- what best.json records of
it reproduces its predictions, and it ranks has-evidence queries above no-evidence ones."""

from __future__ import annotations

import numpy as np
import pytest

from rerank_lab.answerability import FEATURES, Answerability, query_features
from rerank_lab.errors import InputError
from rerank_lab.policy import QueryCandidates, System, sigmoid
from tests.tune_world import CANDS, HAS_EVIDENCE, NO_EVIDENCE


def test_query_features_by_hand():
    # reranker head sorted: 3, 1, -2; first stage: 9, 8, 6, 5, 1, 0
    q = QueryCandidates(list("abcdef"), np.array([9.0, 8.0, 6.0, 5.0, 1.0, 0.0]), np.array([1.0, -2.0, 3.0]))
    assert query_features(q) == [3.0, 2.0, 9.0, 1.0, 8.0]
    # short lists repeat their last score: one reranked doc has margin 0, two first-stage docs reach the "5th"
    short = QueryCandidates(["a", "b"], np.array([4.0, 1.5]), np.array([0.5]))
    assert query_features(short) == [0.5, 0.0, 4.0, 2.5, 2.5]
    assert query_features(QueryCandidates([], np.array([]), np.array([]))) == [0.0] * 5  # nothing retrieved
    assert len(FEATURES) == 5


def test_the_described_model_reproduces_its_predictions():
    model = Answerability.fit(CANDS, HAS_EVIDENCE)
    p = model.predict(CANDS)
    assert list(p) == sorted(CANDS) and all(0.0 < v < 1.0 for v in p.values())
    d = model.describe()
    assert d["features"] == list(FEATURES) and len(d["coef"]) == len(d["mean"]) == len(d["scale"]) == 5
    for qid, q in CANDS.items():  # a logistic regression on standardised features, from best.json's numbers alone
        z = (np.array(query_features(q)) - d["mean"]) / d["scale"]
        assert p[qid] == pytest.approx(float(sigmoid(z @ np.array(d["coef"]) + d["intercept"])), abs=1e-12)


def test_it_ranks_has_evidence_queries_higher():
    """In the shared world a has-evidence query's reranker head holds one doc ~5 logits above the
    rest: the profile separates the two kinds of query well (on the data it was fitted on)."""
    p = Answerability.fit(CANDS, HAS_EVIDENCE).predict(CANDS)
    pairs = [(e, n) for e in HAS_EVIDENCE for n in NO_EVIDENCE]
    assert sum(p[e] > p[n] for e, n in pairs) / len(pairs) > 0.9  # AUC


def test_fit_needs_both_kinds_of_query():
    with pytest.raises(InputError, match="the answerability model needs has-evidence and no-evidence queries"):
        Answerability.fit({q: CANDS[q] for q in NO_EVIDENCE}, HAS_EVIDENCE)
    assert Answerability.fit(CANDS, HAS_EVIDENCE).predict({}) == {}


def test_a_system_built_with_it_carries_its_probabilities():
    model = Answerability.fit(CANDS, HAS_EVIDENCE)
    assert System.build(CANDS, {"sigmoid": sigmoid}, model).answerable == model.predict(CANDS)
    assert System.build(CANDS, {"sigmoid": sigmoid}).answerable is None
