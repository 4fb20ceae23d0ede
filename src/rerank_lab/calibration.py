"""calibration: how far predicted probabilities are from observed frequencies, and fitted fixes for it.

* :func:`reliability_bins` -- the points of a reliability diagram over equal-width bins on [0, 1];
* :func:`expected_calibration_error` -- ECE, the bin-size-weighted mean gap between accuracy and
  confidence (Naeini et al. 2015; Guo et al. 2017);
* :func:`fit_calibrator` -- Platt scaling or isotonic regression (scikit-learn) from raw scores to
  probabilities, or ``"none"`` for scores that already are probabilities.

Bins follow ``sklearn.calibration.calibration_curve(strategy="uniform")``: ``n_bins`` equal-width
bins, each closed on the right, ``(low, high]``, with 0 in the first bin -- so a probability of
exactly 0.3 falls in (0.2, 0.3] with ten bins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from rerank_lab.errors import ConfigError, InputError, unknown_name

CALIBRATORS = ("isotonic", "none", "platt")

ArrayLike = Sequence[float] | np.ndarray


def _vector(values: ArrayLike, name: str) -> np.ndarray:
    """``values`` as a 1-d float array of finite numbers, or an :class:`InputError` naming the first bad item."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be numbers ({exc})", fix=f"pass {name} as a list or 1-d array of floats") from None
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-d, got shape {arr.shape}", fix=f"pass {name} as a flat list or 1-d array")
    if arr.size == 0:
        raise InputError(f"{name} is empty", fix=f"pass at least one value in {name}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise InputError(
            f"{name} holds a non-finite value {float(arr[bad[0]])!r}", record=f"item {bad[0]}", fix=f"drop or repair that item of {name}"
        )
    return arr


def _probs(probs: ArrayLike, name: str = "probs") -> np.ndarray:
    arr = _vector(probs, name)
    bad = np.flatnonzero((arr < 0) | (arr > 1))
    if bad.size:
        raise InputError(
            f"{name} holds {float(arr[bad[0]])!r}, outside [0, 1]",
            record=f"item {bad[0]}",
            fix="pass probabilities; calibrate raw scores first with fit_calibrator('platt' or 'isotonic', ...)",
        )
    return arr


def _labels(labels: ArrayLike, n: int) -> np.ndarray:
    arr = _vector(labels, "labels")
    if arr.size != n:
        raise InputError(f"{n} predictions but {arr.size} labels", fix="pass one 0/1 label per prediction, in the same order")
    bad = np.flatnonzero((arr != 0) & (arr != 1))
    if bad.size:
        raise InputError(
            f"labels hold {float(arr[bad[0]])!r}, not 0 or 1", record=f"item {bad[0]}", fix="binarise the labels (relevant = 1)"
        )
    return arr


def _check_bins(n_bins: int) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ConfigError(f"n_bins must be an integer >= 1, got {n_bins!r}", fix="use e.g. n_bins=10")


def reliability_bins(probs: ArrayLike, labels: ArrayLike, n_bins: int = 10) -> list[dict]:
    """One dict per equal-width bin: ``low``, ``high``, ``count``, ``mean_confidence``, ``accuracy``.

    ``mean_confidence`` is the mean predicted probability in the bin and ``accuracy`` the share of
    positive labels there; both are ``None`` for an empty bin. Every bin is listed, empty or not.

    >>> [(b["count"], b["mean_confidence"], b["accuracy"]) for b in reliability_bins([0.1, 0.2, 0.9], [0, 1, 1], n_bins=2)]
    [(2, 0.15000000000000002, 0.5), (1, 0.9, 1.0)]
    """
    _check_bins(n_bins)
    p = _probs(probs)
    y = _labels(labels, p.size)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)  # right-closed bins, as calibration_curve(strategy="uniform")
    counts = np.bincount(ids, minlength=n_bins)
    conf_sums = np.bincount(ids, weights=p, minlength=n_bins)
    pos_sums = np.bincount(ids, weights=y, minlength=n_bins)
    return [
        {
            "low": float(edges[i]),
            "high": float(edges[i + 1]),
            "count": int(counts[i]),
            "mean_confidence": float(conf_sums[i] / counts[i]) if counts[i] else None,
            "accuracy": float(pos_sums[i] / counts[i]) if counts[i] else None,
        }
        for i in range(n_bins)
    ]


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, n_bins: int = 10) -> float:
    """ECE = sum over bins of ``count / N * |accuracy - mean_confidence|`` (empty bins add nothing).

    ``probs`` are predicted probabilities of the positive class and ``labels`` the 0/1 outcomes.

    >>> # bin (0, 0.5]: 0.2 and 0.4, one positive -> |0.5 - 0.3| = 0.2, weight 2/3; bin (0.5, 1]: 0.9, positive -> 0.1, weight 1/3
    >>> round(expected_calibration_error([0.2, 0.4, 0.9], [0, 1, 1], n_bins=2), 6)
    0.166667
    """
    bins = reliability_bins(probs, labels, n_bins)
    total = sum(b["count"] for b in bins)
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["mean_confidence"]) for b in bins if b["count"]))


@dataclasses.dataclass(frozen=True)
class Calibrator:
    """A fitted map from raw scores to probabilities; ``predict(scores)`` returns a float array in [0, 1]."""

    kind: str
    model: Pipeline | IsotonicRegression | None = None

    def predict(self, scores: ArrayLike) -> np.ndarray:
        """Probabilities for ``scores`` (same order and length).

        >>> fit_calibrator("none", [0.2, 0.7], [0, 1]).predict([0.5]).tolist()
        [0.5]
        """
        if self.kind == "none":
            return _probs(scores, "scores").copy()
        s = _vector(scores, "scores")
        if self.kind == "platt":
            return self.model.predict_proba(s.reshape(-1, 1))[:, 1]
        return np.asarray(self.model.predict(s), dtype=float)


def fit_calibrator(kind: str, scores: ArrayLike, labels: ArrayLike) -> Calibrator:
    """Fit a calibrator of ``kind`` (``platt``, ``isotonic`` or ``none``) on raw scores and 0/1 labels.

    * ``platt``: logistic regression on the single score feature (scikit-learn ``LogisticRegression``,
      unpenalised, on standardised scores), with Platt's (1999) smoothed targets -- positives count as
      ``(N+ + 1) / (N+ + 2)`` and negatives as ``1 / (N- + 2)``, as ``CalibratedClassifierCV`` does --
      so perfectly separated scores still give a finite slope. Needs both classes.
    * ``isotonic``: ``IsotonicRegression(out_of_bounds="clip")``, a non-decreasing step function fitted
      to the labels; scores outside the training range get the end values.
    * ``none``: the identity; the scores must already be probabilities in [0, 1].

    >>> cal = fit_calibrator("isotonic", [0.0, 1.0, 2.0, 3.0], [0, 1, 0, 1])
    >>> cal.predict([-5.0, 1.5, 9.0]).tolist()
    [0.0, 0.5, 1.0]
    """
    if kind not in CALIBRATORS:
        raise unknown_name("calibrator", kind, CALIBRATORS)
    if kind == "none":
        s = _probs(scores, "scores")
        _labels(labels, s.size)
        return Calibrator("none")
    s = _vector(scores, "scores")
    y = _labels(labels, s.size)
    if kind == "isotonic":
        return Calibrator("isotonic", IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(s, y))
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        only = "positive (1)" if n_neg == 0 else "negative (0)"
        raise InputError(
            f"Platt scaling needs both classes, but all {y.size} labels are {only}",
            fix="fit on data with both relevant and non-relevant examples, or use kind='isotonic'",
        )
    targets = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    # Soft targets as two weighted copies of every row: label 1 with weight t, label 0 with weight 1 - t.
    x2 = np.concatenate([s, s]).reshape(-1, 1)
    y2 = np.concatenate([np.ones(s.size), np.zeros(s.size)])
    w2 = np.concatenate([targets, 1 - targets])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=np.inf, max_iter=1000))
    model.fit(x2, y2, logisticregression__sample_weight=w2)
    return Calibrator("platt", model)
