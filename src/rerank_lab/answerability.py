"""Answerability: does this query have evidence at all? A query-level model for the abstain gate.

The reranker gate (:mod:`rerank_lab.policy`) reads one doc's probability; this model reads the
query's whole score profile (:func:`query_features`) and is fitted, by tune, on the select half of
the dev split: a logistic regression of "has a relevant doc" on that profile. Its probability is
what ``gate="answerability"`` compares with the threshold.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from rerank_lab.errors import InputError
from rerank_lab.policy import QueryCandidates

FEATURES = ("reranker_top", "reranker_margin", "first_stage_top", "first_stage_margin_2", "first_stage_margin_5")


def query_features(q: QueryCandidates) -> list[float]:
    """A query's score profile (:data:`FEATURES`): top reranker score and its margin over the 2nd, top
    first-stage score and its margins over the 2nd and 5th (shorter lists repeat their last score).

    >>> q = QueryCandidates(["a", "b", "c"], np.array([9.0, 7.0, 6.0]), np.array([0.5, 2.0]))
    >>> query_features(q)
    [2.0, 1.5, 9.0, 2.0, 3.0]
    """

    def at(a: np.ndarray, i: int) -> float:
        return float(a[min(i, a.size - 1)]) if a.size else 0.0

    ce, fs = np.sort(q.reranker)[::-1], q.first_stage
    return [at(ce, 0), at(ce, 0) - at(ce, 1), at(fs, 0), at(fs, 0) - at(fs, 1), at(fs, 0) - at(fs, 4)]


@dataclasses.dataclass(frozen=True)
class Answerability:
    """Logistic regression (scikit-learn, standardised features) of has-evidence on :func:`query_features`."""

    model: Any

    @classmethod
    def fit(cls, cands: dict[str, QueryCandidates], has_evidence: set[str]) -> Answerability:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        ids = sorted(cands)
        y = np.array([int(q in has_evidence) for q in ids])
        if y.min() == y.max():
            raise InputError("the answerability model needs has-evidence and no-evidence queries", fix="tune on a split with both")
        x = np.array([query_features(cands[q]) for q in ids])
        return cls(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y))

    def predict(self, cands: dict[str, QueryCandidates]) -> dict[str, float]:
        """``{query: probability that it has evidence}``."""
        ids = sorted(cands)
        if not ids:
            return {}
        p = self.model.predict_proba(np.array([query_features(cands[q]) for q in ids]))[:, 1]
        return {q: float(v) for q, v in zip(ids, p)}

    def describe(self) -> dict[str, Any]:
        """The fitted model as plain numbers (written to tune's ``best.json``)."""
        scaler, lr = self.model.steps[0][1], self.model.steps[1][1]
        return {
            "features": list(FEATURES),
            "mean": scaler.mean_.tolist(),
            "scale": scaler.scale_.tolist(),
            "coef": lr.coef_[0].tolist(),
            "intercept": float(lr.intercept_[0]),
        }
