"""calibration: ECE and reliability bins by hand and against scikit-learn, Platt/isotonic fits, error paths."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from rerank_lab.calibration import CALIBRATORS, expected_calibration_error, fit_calibrator, reliability_bins
from rerank_lab.errors import ConfigError, InputError

# Five bins: (0, .2] (.2, .4] (.4, .6] (.6, .8] (.8, 1]
PROBS = [0.1, 0.3, 0.35, 0.7, 0.9, 0.95]
LABELS = [0, 0, 1, 1, 1, 0]
#   bin 0: 0.1            -> confidence 0.1,   accuracy 0   -> gap 0.1,   1 of 6
#   bin 1: 0.3, 0.35      -> confidence 0.325, accuracy 1/2 -> gap 0.175, 2 of 6
#   bin 2: empty
#   bin 3: 0.7            -> confidence 0.7,   accuracy 1   -> gap 0.3,   1 of 6
#   bin 4: 0.9, 0.95      -> confidence 0.925, accuracy 1/2 -> gap 0.425, 2 of 6
HAND_ECE = (1 * 0.1 + 2 * 0.175 + 1 * 0.3 + 2 * 0.425) / 6  # = 1.6 / 6 = 0.26667


def _miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw logit scores that are 4x overconfident: the true P(relevant) is sigmoid(score / 4)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, n)
    labels = (rng.uniform(size=n) < 1 / (1 + np.exp(-z))).astype(int)
    return 4 * z, labels


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


# --- ECE and reliability bins --------------------------------------------------------------------


def test_ece_by_hand():
    assert expected_calibration_error(PROBS, LABELS, n_bins=5) == pytest.approx(HAND_ECE, abs=1e-12)
    assert HAND_ECE == pytest.approx(0.266667, abs=1e-6)


def test_reliability_bins_by_hand():
    bins = reliability_bins(PROBS, LABELS, n_bins=5)
    assert [b["low"] for b in bins] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert [b["high"] for b in bins] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert [b["count"] for b in bins] == [1, 2, 0, 1, 2]
    assert bins[2]["mean_confidence"] is None
    assert [b["mean_confidence"] for b in bins if b["count"]] == pytest.approx([0.1, 0.325, 0.7, 0.925])
    assert [b["accuracy"] for b in bins] == [0.0, 0.5, None, 1.0, 0.5]


def test_bins_are_closed_on_the_right():
    # 0 goes to the first bin; 0.4 and 0.6 close their bins; 1.0 goes to the last bin
    bins = reliability_bins([0.0, 0.4, 0.6, 1.0], [0, 0, 1, 1], n_bins=5)
    assert [b["count"] for b in bins] == [1, 1, 1, 0, 1]
    assert [b["count"] for b in reliability_bins([0.3], [1], n_bins=10)] == [0, 0, 1] + [0] * 7  # 0.3 in (0.2, 0.3]


def test_bins_match_sklearn_calibration_curve():
    rng = np.random.default_rng(0)
    probs = np.concatenate([rng.uniform(size=500), np.linspace(0, 1, 21)])  # includes every edge exactly
    labels = (rng.uniform(size=probs.size) < probs**2).astype(int)
    prob_true, prob_pred = calibration_curve(labels, probs, n_bins=20, strategy="uniform")
    full = [b for b in reliability_bins(probs, labels, n_bins=20) if b["count"]]
    assert [b["accuracy"] for b in full] == pytest.approx(prob_true.tolist(), abs=1e-12)
    assert [b["mean_confidence"] for b in full] == pytest.approx(prob_pred.tolist(), abs=1e-12)
    assert sum(b["count"] for b in full) == probs.size


def test_ece_edge_cases():
    assert expected_calibration_error([0.0, 1.0, 1.0], [0, 1, 1]) == 0.0  # certain and right
    assert expected_calibration_error([1.0, 0.0], [0, 1]) == 1.0  # certain and wrong
    # one bin: ECE is the gap between the mean prediction and the base rate
    assert expected_calibration_error(PROBS, LABELS, n_bins=1) == pytest.approx(abs(np.mean(PROBS) - 0.5))
    assert expected_calibration_error(np.array(PROBS), np.array(LABELS, dtype=bool), n_bins=5) == pytest.approx(HAND_ECE)


# --- calibrators ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["platt", "isotonic"])
def test_calibrators_fix_overconfidence(kind):
    scores, labels = _miscalibrated(6000, seed=1)
    train, test = slice(0, 3000), slice(3000, None)
    raw_ece = expected_calibration_error(_sigmoid(scores[test]), labels[test])
    cal = fit_calibrator(kind, scores[train], labels[train])
    probs = cal.predict(scores[test])
    assert probs.shape == (3000,) and probs.min() >= 0 and probs.max() <= 1
    cal_ece = expected_calibration_error(probs, labels[test])
    assert raw_ece > 0.1  # the fixture really is miscalibrated
    assert cal_ece < raw_ece / 3
    assert cal_ece < 0.05


def test_platt_is_increasing_and_recovers_the_slope():
    scores, labels = _miscalibrated(6000, seed=2)
    cal = fit_calibrator("platt", scores, labels)
    grid = np.linspace(-20, 20, 101)
    assert np.all(np.diff(cal.predict(grid)) > 0)
    # the true map is sigmoid(score / 4): the fitted log-odds slope should be near 1/4
    logit = np.log(cal.predict([4.0]) / (1 - cal.predict([4.0]))) - np.log(cal.predict([0.0]) / (1 - cal.predict([0.0])))
    assert logit[0] / 4 == pytest.approx(0.25, abs=0.03)


def test_isotonic_is_non_decreasing_and_clips():
    scores, labels = _miscalibrated(2000, seed=3)
    cal = fit_calibrator("isotonic", scores, labels)
    grid = np.linspace(scores.min() - 5, scores.max() + 5, 400)
    probs = cal.predict(grid)
    assert np.all(np.diff(probs) >= 0)
    assert probs[0] == cal.predict([scores.min()])[0] and probs[-1] == cal.predict([scores.max()])[0]  # clipped ends


def test_platt_on_separable_scores_is_finite_and_quiet():
    # perfectly separated classes: plain unpenalised logistic regression pushes the slope as far as the
    # solver goes (probabilities ~1e-11 and 1.0); Platt's smoothed targets keep it finite and moderate
    scores = [-3.0, -2.0, -1.0, 1.0, 2.0, 3.0]
    labels = [0, 0, 0, 1, 1, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probs = fit_calibrator("platt", scores, labels).predict(scores)
    assert np.all(np.diff(probs) > 0)
    assert 0 < probs.min() < 0.25 and 0.75 < probs.max() < 1


def test_platt_does_not_depend_on_score_scale():
    scores, labels = _miscalibrated(1000, seed=4)
    small = fit_calibrator("platt", scores, labels).predict(scores)
    large = fit_calibrator("platt", scores * 1000 + 5000, labels).predict(scores * 1000 + 5000)
    assert large == pytest.approx(small, abs=1e-4)


def test_none_is_the_identity():
    cal = fit_calibrator("none", PROBS, LABELS)
    assert cal.kind == "none"
    assert cal.predict(PROBS).tolist() == PROBS


# --- error paths ---------------------------------------------------------------------------------


def test_unknown_kind_lists_valid_kinds():
    assert CALIBRATORS == ("isotonic", "none", "platt")
    with pytest.raises(ConfigError, match=r"unknown calibrator 'temperature' \(fix: use one of: isotonic, none, platt\)"):
        fit_calibrator("temperature", [0.1, 0.9], [0, 1])


@pytest.mark.parametrize("labels", [[1, 1, 1, 1], [0, 0, 0, 0]])
def test_platt_needs_both_classes(labels):
    with pytest.raises(InputError, match=r"Platt scaling needs both classes, but all 4 labels are .*fix: .*kind='isotonic'"):
        fit_calibrator("platt", [0.1, 0.2, 0.3, 0.4], labels)


@pytest.mark.parametrize("kind", CALIBRATORS)
def test_labels_must_be_binary(kind):
    with pytest.raises(InputError, match=r"item 2: labels hold 2.0, not 0 or 1 \(fix: binarise the labels"):
        fit_calibrator(kind, [0.1, 0.2, 0.3], [0, 1, 2])


@pytest.mark.parametrize("kind", CALIBRATORS)
def test_lengths_must_match(kind):
    with pytest.raises(InputError, match="3 predictions but 2 labels"):
        fit_calibrator(kind, [0.1, 0.2, 0.3], [0, 1])


def test_none_rejects_raw_scores():
    with pytest.raises(InputError, match=r"item 1: scores holds 3.5, outside \[0, 1\].*fit_calibrator\('platt' or 'isotonic'"):
        fit_calibrator("none", [0.5, 3.5], [0, 1])
    with pytest.raises(InputError, match=r"scores holds -0.5, outside \[0, 1\]"):
        fit_calibrator("none", [0.5, 0.6], [0, 1]).predict([-0.5])


@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        ([0.2, 1.2], [0, 1], r"item 1: probs holds 1.2, outside \[0, 1\]"),
        ([0.2, float("nan")], [0, 1], r"item 1: probs holds a non-finite value nan"),
        ([], [], r"probs is empty"),
        ([[0.2, 0.3]], [[0, 1]], r"probs must be 1-d, got shape \(1, 2\)"),
        (["high", "low"], [0, 1], r"probs must be numbers"),
        ([0.2, 0.3], [0, 0.5], r"item 1: labels hold 0.5, not 0 or 1"),
        ([0.2, 0.3], [0], r"2 predictions but 1 labels"),
    ],
)
def test_ece_input_errors(probs, labels, match):
    with pytest.raises(InputError, match=match):
        expected_calibration_error(probs, labels)
    with pytest.raises(InputError, match=match):
        reliability_bins(probs, labels)


def test_platt_rejects_non_finite_scores():
    with pytest.raises(InputError, match=r"item 0: scores holds a non-finite value inf"):
        fit_calibrator("platt", [float("inf"), 0.0], [0, 1])
    cal = fit_calibrator("platt", [0.0, 1.0], [0, 1])
    with pytest.raises(InputError, match=r"item 1: scores holds a non-finite value nan"):
        cal.predict([0.5, float("nan")])


@pytest.mark.parametrize("n_bins", [0, -1, 2.0, True])
def test_n_bins_must_be_positive_int(n_bins):
    with pytest.raises(ConfigError, match=r"n_bins must be an integer >= 1.*fix: use e.g. n_bins=10"):
        expected_calibration_error(PROBS, LABELS, n_bins=n_bins)
