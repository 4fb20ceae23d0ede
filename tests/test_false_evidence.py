"""false_evidence_rate: a hand-made run over no-evidence queries, threshold at/below/above, error path."""

from __future__ import annotations

import pytest

from rerank_lab.errors import InputError
from rerank_lab.evaluate import false_evidence_rate

NO_EVIDENCE = {"n1", "n2", "n3", "n4"}
RUN = {
    "n1": {"d1": 0.9, "d2": 0.1, "d3": -2.0},  # best 0.9
    "n2": {"d4": 0.5},  # best exactly 0.5
    "n3": {"d5": 0.2, "d6": -1.0},  # best 0.2
    # n4 is absent from the run: it returned nothing
    "q1": {"d7": 5.0},  # a judged query: not a no-evidence query, ignored whatever it scores
}


@pytest.mark.parametrize(
    ("threshold", "flagged"),
    [
        (0.5, {"n1", "n2"}),  # at the threshold counts (>=)
        (0.4999, {"n1", "n2"}),  # just below n2's best
        (0.5001, {"n1"}),  # just above n2's best
        (0.2, {"n1", "n2", "n3"}),
        (0.9, {"n1"}),
        (0.95, set()),  # above every no-evidence score (q1's 5.0 does not count)
        (-5.0, {"n1", "n2", "n3"}),  # negative logits are scores too; n4 still returned nothing
        (float("-inf"), {"n1", "n2", "n3"}),
    ],
)
def test_rate_by_hand(threshold, flagged):
    assert false_evidence_rate(RUN, NO_EVIDENCE, threshold) == len(flagged) / 4


def test_one_high_result_is_enough():
    run = {"n1": {f"d{i}": 0.0 for i in range(50)} | {"hit": 0.7}}
    assert false_evidence_rate(run, {"n1", "n2"}, 0.7) == 0.5


def test_empty_results_and_empty_run_are_clean():
    assert false_evidence_rate({"n1": {}, "n2": {}}, {"n1", "n2"}, float("-inf")) == 0.0
    assert false_evidence_rate({}, NO_EVIDENCE, 0.0) == 0.0


def test_needs_no_evidence_queries():
    with pytest.raises(
        InputError, match=r"no no-evidence queries .*fix: use a split with no-evidence queries, e.g. scifact_rationales NOINFO"
    ):
        false_evidence_rate(RUN, set(), 0.5)
