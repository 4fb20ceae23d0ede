"""stats: paired bootstrap, randomization test and Holm adjustment -- hand-worked cases, scipy / statsmodels cross-checks,
seeds, error paths."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from rerank_lab.errors import ConfigError, InputError
from rerank_lab.stats import holm, paired_bootstrap, randomization_test

# Eight queries, values on a 1/8 grid so every difference and mean is exact in binary floating point.
SMALL_A = {f"q{i}": v for i, v in enumerate([0.25, 0.5, 0.125, 0.75, 0.375, 0.625, 0.0, 0.875])}
SMALL_B = {f"q{i}": v for i, v in enumerate([0.5, 0.5, 0.5, 0.625, 0.75, 1.0, 0.25, 0.875])}
# differences b - a: 0.25, 0, 0.375, -0.125, 0.375, 0.375, 0.25, 0 -> mean 0.1875


def _fixture(n: int, shift: float, noise: float, seed: int) -> tuple[dict[str, float], dict[str, float]]:
    """Two systems on ``n`` queries: b = a + shift + N(0, noise); the true mean difference is ``shift``."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 1, n)
    b = a + shift + rng.normal(0, noise, n)
    return {f"q{i:03d}": float(x) for i, x in enumerate(a)}, {f"q{i:03d}": float(x) for i, x in enumerate(b)}


def _scipy_two_sample(a: dict[str, float], b: dict[str, float], n_resamples: int, seed: int) -> float:
    """scipy's paired permutation test in its two-sample form: swap a and b within each query."""
    qids = sorted(a)
    res = scipy_stats.permutation_test(
        (np.array([a[q] for q in qids]), np.array([b[q] for q in qids])),
        lambda x, y, axis: np.mean(y - x, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        rng=np.random.Generator(np.random.PCG64(seed)),
    )
    return float(res.pvalue)


def _enumerated_p(a: dict[str, float], b: dict[str, float]) -> float:
    """Every sign flip written out: the share with |mean| >= |observed mean|."""
    d = np.array([b[q] - a[q] for q in sorted(a)])
    observed = abs(d.mean())
    flips = [abs(np.mean(d * np.array(signs))) for signs in itertools.product((1, -1), repeat=d.size)]
    return sum(f >= observed - 1e-12 for f in flips) / len(flips)


# --- randomization test -------------------------------------------------------------------------


def test_randomization_hand_worked():
    # differences 1, 2, 3 -> sums over the 8 sign flips: +-6, +-4, +-2, 0, 0; only +-6 reach |6| -> 2/8
    r = randomization_test({"a": 0.0, "b": 0.0, "c": 0.0}, {"a": 1.0, "b": 2.0, "c": 3.0})
    assert r == {"mean_difference": 2.0, "p_value": 0.25, "exact": True, "n_queries": 3, "n_resamples": 8, "seed": 0}


def test_randomization_exact_matches_scipy_and_enumeration():
    r = randomization_test(SMALL_A, SMALL_B, n_resamples=10000)
    assert r["exact"] is True and r["n_resamples"] == 2**8
    assert r["mean_difference"] == 0.1875
    # identical, not merely close: all 256 sign flips are enumerated by both
    assert r["p_value"] == _scipy_two_sample(SMALL_A, SMALL_B, 10000, seed=123)
    assert r["p_value"] == _enumerated_p(SMALL_A, SMALL_B)
    # exact: the seed plays no part
    assert randomization_test(SMALL_A, SMALL_B, seed=99)["p_value"] == r["p_value"]


def test_randomization_sampled_matches_scipy_and_exact_within_monte_carlo_error():
    a, b = _fixture(14, shift=0.04, noise=0.15, seed=7)
    exact = randomization_test(a, b, n_resamples=2**14)
    assert exact["exact"] is True
    assert exact["p_value"] == pytest.approx(_enumerated_p(a, b), abs=1e-12)

    n = 4000
    sampled = randomization_test(a, b, n_resamples=n, seed=3)
    assert sampled["exact"] is False and sampled["n_resamples"] == n
    # scipy's two-sample form draws the same sign flips from the same generator
    assert sampled["p_value"] == pytest.approx(_scipy_two_sample(a, b, n, seed=3), rel=1e-12)
    p = exact["p_value"]
    assert 0.01 < p < 0.99  # a fixture where the Monte-Carlo error is not trivially zero
    assert abs(sampled["p_value"] - p) <= 4 * math.sqrt(p * (1 - p) / n) + 2 / n


def test_randomization_plus_one_correction():
    # 20 queries all improving by 1: no random flip reaches the observed mean except all-plus (chance 2**-20),
    # so each tail is (0 + 1) / (n + 1) and the two-sided p-value is twice that -- never 0
    a = {f"q{i}": 0.0 for i in range(20)}
    b = {f"q{i}": 1.0 for i in range(20)}
    r = randomization_test(a, b, n_resamples=99)
    assert r["exact"] is False
    assert r["p_value"] == pytest.approx(2 / 100)


def test_randomization_no_difference_gives_p_one():
    assert randomization_test(SMALL_A, dict(SMALL_A))["p_value"] == 1.0


def test_randomization_reproducible_and_order_free():
    a, b = _fixture(30, shift=0.02, noise=0.2, seed=1)
    first = randomization_test(a, b, n_resamples=2000, seed=5)
    again = randomization_test(dict(reversed(list(a.items()))), b, n_resamples=2000, seed=5)
    assert first == again
    assert randomization_test(a, b, n_resamples=2000, seed=6)["p_value"] != first["p_value"]


# --- paired bootstrap ----------------------------------------------------------------------------


def test_bootstrap_ci_contains_true_difference():
    a, b = _fixture(200, shift=0.05, noise=0.1, seed=11)
    r = paired_bootstrap(a, b, n_resamples=10000, confidence=0.95, seed=0)
    assert r["n_queries"] == 200 and r["n_resamples"] == 10000 and r["confidence"] == 0.95 and r["seed"] == 0
    assert r["mean_difference"] == pytest.approx(np.mean([b[q] - a[q] for q in a]), abs=1e-15)
    assert r["mean_difference"] == pytest.approx(r["mean_b"] - r["mean_a"], abs=1e-12)
    assert r["ci_low"] < 0.05 < r["ci_high"]
    assert r["ci_low"] > 0  # and the effect is real: 0 is outside the interval ...
    assert r["p_value"] < 0.001  # ... and the test rejects


def test_bootstrap_reproducible_to_the_last_digit():
    a, b = _fixture(50, shift=0.01, noise=0.2, seed=2)
    first = paired_bootstrap(a, b, n_resamples=3000, seed=42)
    assert paired_bootstrap(a, b, n_resamples=3000, seed=42) == first
    assert paired_bootstrap(dict(sorted(a.items(), reverse=True)), b, n_resamples=3000, seed=42) == first
    other = paired_bootstrap(a, b, n_resamples=3000, seed=43)
    assert (other["ci_low"], other["ci_high"], other["p_value"]) != (first["ci_low"], first["ci_high"], first["p_value"])


def test_bootstrap_two_queries_by_hand():
    # differences 0 and 1: a resampled mean is 0, 0.5 or 1 with chance 1/4, 1/2, 1/4.
    # 95% percentile interval -> [0, 1]; shifted to the null, |d* - 0.5| >= 0.5 exactly when d* is 0 or 1 -> p ~ 1/2
    r = paired_bootstrap({"x": 0.0, "y": 0.0}, {"x": 0.0, "y": 1.0}, n_resamples=10000)
    assert r["mean_difference"] == 0.5
    assert (r["ci_low"], r["ci_high"]) == (0.0, 1.0)
    assert r["p_value"] == pytest.approx(0.5, abs=4 * math.sqrt(0.25 / 10000))


def test_bootstrap_wider_confidence_nests():
    a, b = _fixture(40, shift=0.03, noise=0.2, seed=3)
    narrow = paired_bootstrap(a, b, n_resamples=4000, confidence=0.8)
    wide = paired_bootstrap(a, b, n_resamples=4000, confidence=0.99)
    assert wide["ci_low"] < narrow["ci_low"] <= narrow["mean_difference"] <= narrow["ci_high"] < wide["ci_high"]
    assert wide["p_value"] == narrow["p_value"]  # same seed, same resamples


def test_bootstrap_p_value_floor_and_null():
    a = {f"q{i}": 0.0 for i in range(10)}
    b = {f"q{i}": 1.0 + i / 100 for i in range(10)}
    assert paired_bootstrap(a, b, n_resamples=999)["p_value"] == 1 / 1000  # +1 correction: never 0
    same = paired_bootstrap(SMALL_A, dict(SMALL_A), n_resamples=500)
    assert (same["mean_difference"], same["ci_low"], same["ci_high"], same["p_value"]) == (0.0, 0.0, 0.0, 1.0)


# --- Holm-Bonferroni ------------------------------------------------------------------------------


def _step_down_rejects(p: list[float], alpha: float) -> set[int]:
    """Holm's procedure as written in the paper: walk the sorted p-values, reject while p_(j) <= alpha / (m - j + 1)."""
    rejected: set[int] = set()
    for j, i in enumerate(sorted(range(len(p)), key=lambda i: p[i])):
        if p[i] > alpha / (len(p) - j):
            break
        rejected.add(i)
    return rejected


def test_holm_hand_worked():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    # capped at 1; a single test is left alone; ties share one value
    assert holm([0.5, 0.6]) == [1.0, 1.0]
    assert holm([0.3]) == [0.3]
    assert holm([0.02, 0.02, 0.5]) == pytest.approx([0.06, 0.06, 0.5], abs=1e-15)
    assert holm([]) == []


def test_holm_matches_statsmodels_and_the_step_down_procedure():
    rng = np.random.default_rng(0)
    for m in (1, 2, 3, 7, 20, 50):
        for _ in range(4):
            # a mix of small and null-like p-values, with some ties (rounded) and exact 0s and 1s
            p = np.concatenate([rng.uniform(0, 0.05, m // 2), rng.uniform(0, 1, m - m // 2)]).round(3).tolist()
            if m > 3:
                p[0], p[1] = 0.0, 1.0
            adjusted = holm(p)
            assert adjusted == pytest.approx(multipletests(p, method="holm")[1].tolist(), abs=1e-15)
            assert all(a >= raw for a, raw in zip(adjusted, p)) and all(0.0 <= a <= 1.0 for a in adjusted)
            for alpha in (0.01, 0.05, 0.1, 0.2):
                assert {i for i, a in enumerate(adjusted) if a <= alpha} == _step_down_rejects(p, alpha)


def test_holm_is_order_free():
    p = [0.04, 0.001, 0.2, 0.04, 0.013]
    adjusted = holm(p)
    # sorted 0.001, 0.013, 0.04, 0.04, 0.2 -> x5, x4, x3, x2, x1 = 0.005, 0.052, 0.12, 0.08, 0.2 -> running max: the tie shares 0.12
    assert adjusted == pytest.approx([0.12, 0.005, 0.2, 0.12, 0.052], abs=1e-15)
    for perm in itertools.permutations(range(5)):
        assert holm([p[i] for i in perm]) == [adjusted[i] for i in perm]


@pytest.mark.parametrize("bad", [float("nan"), -0.1, 1.5, "0.5", None, True])
def test_holm_refuses_non_p_values(bad):
    with pytest.raises(InputError, match=r"p-value .* at position 1 is not a number in \[0, 1\]") as exc:
        holm([0.5, bad])
    assert exc.value.record == "p-value 1"


# --- error paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize("test", [paired_bootstrap, randomization_test])
def test_queries_must_match(test):
    b = {k: v for k, v in SMALL_B.items() if k not in {"q3", "q5"}}
    with pytest.raises(InputError, match=r"query 'q3' is scored for system a but not for system b \(2 queries in all\)") as exc:
        test(SMALL_A, b)
    assert exc.value.fix and "same queries" in exc.value.fix
    with pytest.raises(InputError, match=r"query 'zz' is scored for system b but not for system a"):
        test(SMALL_A, {**SMALL_B, "zz": 1.0})


@pytest.mark.parametrize("test", [paired_bootstrap, randomization_test])
def test_needs_two_queries(test):
    with pytest.raises(InputError, match="needs at least 2 queries, got 1"):
        test({"q": 0.1}, {"q": 0.2})
    with pytest.raises(InputError, match="needs at least 2 queries, got 0"):
        test({}, {})


@pytest.mark.parametrize("test", [paired_bootstrap, randomization_test])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "0.5", None, True])
def test_values_must_be_finite_numbers(test, bad):
    with pytest.raises(InputError, match="system b has a non-finite or non-numeric value") as exc:
        test(SMALL_A, {**SMALL_B, "q4": bad})
    assert exc.value.record == "query q4"


@pytest.mark.parametrize("test", [paired_bootstrap, randomization_test])
@pytest.mark.parametrize("n", [0, -5, 2.5, True])
def test_n_resamples_must_be_positive_int(test, n):
    with pytest.raises(ConfigError, match=r"n_resamples must be an integer >= 1.*fix: use e.g. n_resamples=10000"):
        test(SMALL_A, SMALL_B, n_resamples=n)


@pytest.mark.parametrize("confidence", [0, 1, 1.5, -0.1, float("nan")])
def test_confidence_must_be_inside_0_1(confidence):
    with pytest.raises(ConfigError, match=r"confidence must lie strictly between 0 and 1.*fix: use e.g. confidence=0.95"):
        paired_bootstrap(SMALL_A, SMALL_B, confidence=confidence)
