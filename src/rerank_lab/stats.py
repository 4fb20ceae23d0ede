"""stats: is system ``b`` really better than system ``a``? Paired significance over the same queries.

Both tests take two ``{query id: value}`` maps -- one metric's column of :func:`rerank_lab.evaluate.per_query`
for two runs -- and work on the per-query differences ``b - a``:

* :func:`paired_bootstrap` resamples queries with replacement (``scipy.stats.bootstrap``) for a percentile
  confidence interval of the mean difference and a two-sided bootstrap p-value;
* :func:`randomization_test` is the paired sign-flip permutation test (``scipy.stats.permutation_test``
  with ``permutation_type="samples"``), exact when every sign flip fits in ``n_resamples``.

When one call tests many hypotheses, :func:`holm` adjusts their p-values (Holm-Bonferroni step-down,
tested against statsmodels' ``multipletests(method="holm")``), controlling the family-wise error rate.

Queries are taken in sorted id order and the random stream is ``numpy.random.Generator(PCG64(seed))``,
so the same inputs and seed give the same numbers to the last digit, whatever the dicts' order.
:func:`holm` uses no randomness, and tied p-values get the same adjusted value, so its output does not
depend on the order of its input either (each value stays in its own position).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as scipy_stats

from rerank_lab.errors import ConfigError, InputError

_SAME_QUERIES_FIX = "compare two runs scored on the same queries (per_query with the same qrels and split)"
_BATCH_VALUES = 1_000_000  # resamples are computed in batches of about this many values, to bound memory


def _check_resamples(n_resamples: int) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ConfigError(f"n_resamples must be an integer >= 1, got {n_resamples!r}", fix="use e.g. n_resamples=10000")


def _paired_differences(a: dict[str, float], b: dict[str, float]) -> np.ndarray:
    """``b - a`` per query, in sorted query-id order; the two systems must cover exactly the same queries.

    >>> _paired_differences({"q2": 0.5, "q1": 1.0}, {"q1": 0.25, "q2": 1.0}).tolist()
    [-0.75, 0.5]
    """
    for name, mine, other in (("a", a, b), ("b", b, a)):
        missing = sorted(set(mine) - set(other))
        if missing:
            more = f" ({len(missing)} queries in all)" if len(missing) > 1 else ""
            other_name = "b" if name == "a" else "a"
            raise InputError(
                f"query {missing[0]!r} is scored for system {name} but not for system {other_name}{more}",
                record=f"query {missing[0]}",
                fix=_SAME_QUERIES_FIX,
            )
    qids = sorted(a)
    if len(qids) < 2:
        raise InputError(f"a paired test needs at least 2 queries, got {len(qids)}", fix=_SAME_QUERIES_FIX)
    for name, values in (("a", a), ("b", b)):
        for qid in qids:
            value = values[qid]
            if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating) or not math.isfinite(value):
                raise InputError(
                    f"system {name} has a non-finite or non-numeric value {value!r}",
                    record=f"query {qid}",
                    fix="pass finite metric values, e.g. one column of evaluate.per_query",
                )
    return np.array([float(b[q]) - float(a[q]) for q in qids])


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def paired_bootstrap(a: dict[str, float], b: dict[str, float], n_resamples: int = 10000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Paired bootstrap over queries for the mean difference ``b - a``.

    Returns ``mean_a``, ``mean_b``, ``mean_difference``, the percentile confidence interval
    ``ci_low``/``ci_high`` of the mean difference at ``confidence``, a two-sided ``p_value``,
    and ``n_queries``, ``n_resamples``, ``confidence``, ``seed``.

    The p-value is the shift (null-centred) bootstrap test: with ``d`` the observed mean
    difference and ``d*_i`` the ``B`` resampled means, ``p = (1 + #{|d*_i - d| >= |d|}) / (B + 1)``
    -- the resampled means are moved to a null of zero difference, and the ``+1`` counts the
    observed sample itself, so ``p`` is never 0 and its floor is ``1 / (B + 1)``.

    >>> r = paired_bootstrap({"q1": 0.1, "q2": 0.4, "q3": 0.3}, {"q1": 0.5, "q2": 0.6, "q3": 0.7}, n_resamples=999)
    >>> round(r["mean_difference"], 6), r["ci_low"] > 0, r["p_value"]
    (0.333333, True, 0.001)
    """
    _check_resamples(n_resamples)
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 < confidence < 1:
        raise ConfigError(f"confidence must lie strictly between 0 and 1, got {confidence!r}", fix="use e.g. confidence=0.95")
    diffs = _paired_differences(a, b)
    rng = np.random.Generator(np.random.PCG64(seed))
    result = scipy_stats.bootstrap(
        (diffs,),
        _mean,
        n_resamples=n_resamples,
        batch=max(1, _BATCH_VALUES // len(diffs)),
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=rng,
    )
    observed = float(np.mean(diffs))
    extreme = np.count_nonzero(np.abs(result.bootstrap_distribution - observed) >= abs(observed))
    return {
        "mean_a": float(np.mean([a[q] for q in sorted(a)])),
        "mean_b": float(np.mean([b[q] for q in sorted(b)])),
        "mean_difference": observed,
        "ci_low": float(result.confidence_interval.low),
        "ci_high": float(result.confidence_interval.high),
        "confidence": float(confidence),
        "p_value": float((1 + extreme) / (n_resamples + 1)),
        "n_queries": len(diffs),
        "n_resamples": n_resamples,
        "seed": seed,
    }


def randomization_test(a: dict[str, float], b: dict[str, float], n_resamples: int = 10000, seed: int = 0) -> dict:
    """Paired randomization (sign-flip permutation) test of the mean difference ``b - a``.

    Under the null hypothesis the two systems are exchangeable on every query, so each per-query
    difference is equally likely to have either sign. The null distribution of the mean difference
    comes from ``scipy.stats.permutation_test`` with ``permutation_type="samples"`` on the
    differences (one sample: each permutation flips the sign of each difference independently).

    * If ``n_resamples >= 2**n_queries`` every sign flip is enumerated: the test is **exact**
      (``exact`` is True, ``n_resamples`` reports ``2**n_queries``) and no correction is added.
    * Otherwise ``n_resamples`` random sign flips are drawn, and each tail's p-value gets the
      ``+1`` correction ``(1 + #{as extreme}) / (n_resamples + 1)`` (Phipson & Smyth 2010): the
      observed assignment counts as one of the resamples, so ``p`` is never 0.

    The two-sided p-value is ``min(1, 2 * min(p_less, p_greater))``, scipy's convention; the null
    distribution is symmetric, so in the exact case this equals the share of sign flips with
    ``|mean| >= |observed mean|``.

    >>> r = randomization_test({"q1": 0.1, "q2": 0.4, "q3": 0.3}, {"q1": 0.5, "q2": 0.6, "q3": 0.7})
    >>> r["exact"], r["n_resamples"], r["p_value"]  # only all-positive flips reach the observed mean: 2 of 8
    (True, 8, 0.25)
    """
    _check_resamples(n_resamples)
    diffs = _paired_differences(a, b)
    exact = n_resamples >= 2 ** len(diffs)
    result = scipy_stats.permutation_test(
        (diffs,),
        _mean,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        batch=max(1, _BATCH_VALUES // len(diffs)),
        alternative="two-sided",
        rng=np.random.Generator(np.random.PCG64(seed)),
    )
    return {
        "mean_difference": float(np.mean(diffs)),
        "p_value": float(result.pvalue),
        "exact": exact,
        "n_queries": len(diffs),
        "n_resamples": 2 ** len(diffs) if exact else n_resamples,
        "seed": seed,
    }


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given.

    With the ``m`` p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the adjusted value of
    ``p_(i)`` is ``min(1, max_{j <= i} (m - j + 1) * p_(j))``; rejecting every hypothesis whose
    adjusted value is ``<= alpha`` is Holm's step-down procedure, which keeps the chance of any
    false rejection in the family at or below ``alpha`` under any dependence between the tests.
    Equal to ``statsmodels.stats.multitest.multipletests(method="holm")`` (the tests check it);
    written out here because that function runs a full ``gc.collect()`` on every call, which costs
    up to half a second in a process holding a model.

    >>> [round(p, 6) for p in holm([0.01, 0.04, 0.03, 0.005])]  # 0.005*4, 0.01*3, 0.03*2, max(0.04*1, 0.06)
    [0.03, 0.06, 0.06, 0.02]
    >>> holm([])
    []
    """
    values = list(p_values)
    for i, p in enumerate(values):
        if isinstance(p, bool) or not isinstance(p, int | float | np.integer | np.floating) or not 0.0 <= p <= 1.0:  # NaN fails too
            raise InputError(
                f"p-value {p!r} at position {i} is not a number in [0, 1]",
                record=f"p-value {i}",
                fix="pass the raw p-values of the family's tests",
            )
    if not values:
        return []
    p = np.array(values, dtype=float)
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])  # (m - j + 1) * p_(j), running max
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return [float(a) for a in adjusted]
