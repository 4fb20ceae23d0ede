"""policy: the system over cached scores -- candidates, answer and head_scores by hand and against
ranx, calibration over cached pairs, and a system's score on a query set worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ranx import Run as RanxRun
from ranx import fuse

from rerank_lab.errors import ConfigError, InputError
from rerank_lab.policy import (
    QueryCandidates,
    Settings,
    Subset,
    System,
    answer,
    calibrated,
    candidates,
    false_evidence,
    first_stage_score,
    head_scores,
    pair_labels,
    sigmoid,
)

# --- candidates: the first stage's order lined up with the reranker's head ----------------------


def test_candidates_line_up_the_head_in_trec_eval_order():
    run = {"q": {"a": 1.0, "b": 3.0, "c": 3.0}}  # b and c tie: trec_eval puts the larger doc id first
    got = candidates(run, {"q": {"b": 0.2, "c": 0.1}}, ["q", "empty"])
    assert got["q"].docs == ["c", "b", "a"]
    assert got["q"].first_stage.tolist() == [3.0, 3.0, 1.0]
    assert got["q"].reranker.tolist() == [0.1, 0.2]  # in the first stage's order, not the reranker's
    assert got["empty"].docs == [] and got["empty"].reranker.size == 0  # a query the first stage found nothing for


def test_candidates_refuse_a_head_that_is_not_the_first_stage_top():
    run = {"q": {"a": 1.0, "b": 3.0, "c": 2.0}}
    expected = r"^scores\.tsv: query q: the reranked docs of query q are not the first stage's top 2 .*tune\.run"
    with pytest.raises(InputError, match=expected):
        candidates(run, {"q": {"a": 0.5, "b": 0.1}}, ["q"], "scores.tsv")


# --- answer and head_scores by hand ---------------------------------------------------------------

# first-stage order a, b, c, d; the reranker scored the head a, b, c
Q3 = QueryCandidates(["a", "b", "c", "d"], np.array([4.0, 3.0, 2.0, 1.0]), np.array([1.0, 2.0, 0.0]))
P3 = np.array([0.6, 0.7, 0.1])  # calibrated probabilities of a, b, c (best 0.7)
# every doc reranked; reranker ranks d, b, a, c; first-stage ranks a, b, c, d
Q4 = QueryCandidates(["a", "b", "c", "d"], np.array([4.0, 3.0, 2.0, 1.0]), np.array([1.0, 2.0, 0.0, 3.0]))
P4 = sigmoid(Q4.reranker)


def _order(docs: dict[str, float]) -> list[str]:
    return sorted(docs, key=lambda d: -docs[d])


def test_answer_abstains_below_the_threshold():
    assert answer(Q3, P3, Settings(4, 3, threshold=0.7001)) == {}
    assert answer(Q3, P3, Settings(4, 3, threshold=1.0)) == {}
    assert answer(Q3, P3, Settings(4, 3, threshold=0.7)) != {}  # reaching the threshold is enough
    # only the reranked head counts: c's probability would not do on its own
    assert answer(Q3, np.array([0.1, 0.1, 0.9]), Settings(4, 2, threshold=0.5)) == {}
    assert answer(Q3, P3, Settings(0, 3)) == {}  # an empty pool returns nothing


def test_answer_reranks_the_head_and_keeps_the_tail():
    # scores encode the order: pool size - position
    assert answer(Q3, P3, Settings(4, 10)) == {"b": 4.0, "a": 3.0, "c": 2.0, "d": 1.0}
    assert answer(Q3, P3, Settings(4, 2)) == {"b": 4.0, "a": 3.0, "c": 2.0, "d": 1.0}  # head a, b
    assert answer(Q3, P3, Settings(4, 1)) == {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}  # head a alone
    assert answer(Q4, P4, Settings(4, 4)) == {"d": 4.0, "b": 3.0, "a": 2.0, "c": 1.0}
    assert answer(Q4, P4, Settings(4, 3)) == {"b": 4.0, "a": 3.0, "c": 2.0, "d": 1.0}  # d only in the tail


def test_answer_pool_is_cut_by_top_k_retriever():
    assert answer(Q3, P3, Settings(2, 10)) == {"b": 2.0, "a": 1.0}
    assert answer(Q3, P3, Settings(1, 10)) == {"a": 1.0}
    assert answer(Q4, P4, Settings(3, 10)) == {"b": 3.0, "a": 2.0, "c": 1.0}  # d is cut before reranking


def test_rrf_by_hand_and_k0_changes_the_order():
    # ranks (reranker, first stage): a (3, 1), b (2, 2), c (4, 3), d (1, 4)
    rrf = {
        k0: {d: 1 / (k0 + r) + 1 / (k0 + f) for d, (r, f) in {"a": (3, 1), "b": (2, 2), "c": (4, 3), "d": (1, 4)}.items()} for k0 in (1, 60)
    }
    for k0 in (1, 60):
        got = head_scores(Q4, 4, Settings(4, 4, "rrf", k0=k0))
        assert got.tolist() == pytest.approx([rrf[k0][d] for d in "abcd"], abs=1e-15)
    assert rrf[1] == pytest.approx({"a": 0.75, "b": 2 / 3, "c": 0.45, "d": 0.7})
    # small k0 rewards d's single first place; large k0 prefers b's two second places
    assert _order(answer(Q4, P4, Settings(4, 4, "rrf", k0=1))) == ["a", "d", "b", "c"]
    assert _order(answer(Q4, P4, Settings(4, 4, "rrf", k0=60))) == ["a", "b", "d", "c"]
    assert _order(answer(Q4, P4, Settings(4, 4, "none"))) == ["d", "b", "a", "c"]


def test_weighted_alpha_ends_are_the_two_runs():
    assert _order(answer(Q4, P4, Settings(4, 4, "weighted", alpha=1.0))) == ["d", "b", "a", "c"]  # reranker
    assert _order(answer(Q4, P4, Settings(4, 4, "weighted", alpha=0.0))) == ["a", "b", "c", "d"]  # first stage


# --- head_scores against ranx ----------------------------------------------------------------

DOCS6 = [f"d{i}" for i in range(6)]
FS6 = np.array([9.0, 7.5, 7.0, 4.0, 3.2, 1.0])
CE6 = np.array([-1.0, 2.5, 0.3, 1.9, -3.0, 0.8])
Q6 = QueryCandidates(DOCS6, FS6, CE6)


def _ranx(k: int) -> list[RanxRun]:
    return [
        RanxRun({"q": dict(zip(DOCS6[:k], CE6[:k].tolist()))}, name="reranker"),
        RanxRun({"q": dict(zip(DOCS6[:k], FS6[:k].tolist()))}, name="first_stage"),
    ]


@pytest.mark.parametrize("k", [6, 4])
@pytest.mark.parametrize("alpha", [0.3, 0.7])
@pytest.mark.parametrize("norm", ["min-max", "zmuv", "rank"])
def test_weighted_matches_ranx_wsum(norm, alpha, k):
    fused = fuse(_ranx(k), norm=norm, method="wsum", params={"weights": [alpha, 1 - alpha]}).to_dict()["q"]
    ours = head_scores(Q6, k, Settings(6, k, "weighted", alpha=alpha, norm=norm))
    assert ours.size == k
    assert ours.tolist() == pytest.approx([fused[d] for d in DOCS6[:k]], abs=1e-12)
    assert [DOCS6[i] for i in np.argsort(-ours, kind="stable")] == _order(fused)


@pytest.mark.parametrize("k", [6, 4])
@pytest.mark.parametrize("k0", [1, 10, 60])
def test_rrf_matches_ranx(k0, k):
    fused = fuse(_ranx(k), norm=None, method="rrf", params={"k": k0}).to_dict()["q"]
    ours = head_scores(Q6, k, Settings(6, k, "rrf", k0=k0))
    assert ours.tolist() == pytest.approx([fused[d] for d in DOCS6[:k]], abs=1e-12)
    assert [DOCS6[i] for i in np.argsort(-ours, kind="stable")] == _order(fused)


def test_false_evidence():
    run = {"n1": {"d": 1.0}, "n2": {}, "e1": {"d": 1.0}}
    assert false_evidence(run, ["n1", "n2", "n3", "n4"]) == 0.25  # n2 answered nothing, n3/n4 absent
    assert false_evidence(run, ["n1"]) == 1.0
    assert false_evidence(run, ["n3"]) == 0.0
    assert false_evidence(run, []) == 0.0  # no no-evidence queries: nothing to count


# --- calibration over cached pairs ------------------------------------------------------------

# three queries: A (head a1, a2; a2 relevant), B (head b1, b2; b1 relevant), N (no evidence)
QA = QueryCandidates(["a1", "a2", "a3"], np.array([3.0, 2.0, 1.0]), np.array([0.0, 2.0]))
QB = QueryCandidates(["b1", "b2"], np.array([2.0, 1.0]), np.array([1.0, -1.0]))
QN = QueryCandidates(["n1", "n2"], np.array([2.0, 1.0]), np.array([-3.0, -4.0]))
SMALL = {"A": QA, "B": QB, "N": QN}
SMALL_QRELS = {"A": {"a2": 1, "a3": 0}, "B": {"b1": 2}}
SUBSET = Subset(["A", "B"], ["N"], SMALL_QRELS)


def test_pair_labels_are_every_reranked_pair_relevant_or_not():
    scores, labels = pair_labels(SMALL, SMALL_QRELS)
    assert scores.tolist() == [0.0, 2.0, 1.0, -1.0, -3.0, -4.0]
    assert labels.tolist() == [0, 1, 1, 0, 0, 0]  # a3 is judged 0 but not reranked: not a pair


def test_calibrated_applies_each_calibrator_to_each_head():
    empty = QueryCandidates([], np.array([]), np.array([]))
    got = calibrated({"A": QA, "E": empty}, {"sigmoid": sigmoid, "half": lambda x: x / 2})
    assert got["sigmoid"]["A"].tolist() == pytest.approx([0.5, 1 / (1 + math.exp(-2))])
    assert got["half"]["A"].tolist() == [0.0, 1.0]
    assert got["sigmoid"]["E"].size == 0 and got["half"]["E"].size == 0  # never called on an empty head


# --- a system and its score on a query set, by hand ------------------------------------------

NDCG_RANK2 = 1 / math.log2(3)  # one relevant doc at rank 2


def test_system_run_and_score_by_hand():
    system = System.build(SMALL, {"sigmoid": sigmoid})
    s = Settings(top_k_retriever=3, top_k_rerank=2, threshold=0.5)
    # A: best head probability sigmoid(2) = 0.88 answers, a2 first; B: sigmoid(1) = 0.73 answers;
    # N: sigmoid(-3) = 0.05 abstains
    assert system.run(s) == {"A": {"a2": 3.0, "a1": 2.0, "a3": 1.0}, "B": {"b1": 2.0, "b2": 1.0}}
    assert system.run(s, ["B"]) == {"B": {"b1": 2.0, "b2": 1.0}}
    assert system.score(s, SUBSET) == (1.0, 0.0)
    assert system.score(Settings(3, 2, threshold=0.0), SUBSET) == (1.0, 1.0)  # N answered too
    # only a1 reranked (sigmoid(0) = 0.5 still reaches 0.5): A keeps the first-stage order, a2 at rank 2
    ndcg, fer = system.score(Settings(3, 1, threshold=0.5), SUBSET)
    assert (ndcg, fer) == (pytest.approx((NDCG_RANK2 + 1.0) / 2, abs=1e-12), 0.0)


def test_the_answerability_gate_reads_the_query_probability():
    system = System(SMALL, calibrated(SMALL, {"sigmoid": sigmoid}), {"A": 0.9, "B": 0.2, "N": 0.1})
    s = Settings(3, 2, gate="answerability", threshold=0.5)
    assert system.run(s) == {"A": {"a2": 3.0, "a1": 2.0, "a3": 1.0}}  # B abstains despite its confident head
    assert system.score(s, SUBSET) == (0.5, 0.0)  # a judged query the system abstains on scores 0
    with pytest.raises(ConfigError, match="gate 'answerability' needs the fitted answerability model"):
        System.build(SMALL, {"sigmoid": sigmoid}).run(s)


def test_first_stage_score_by_hand():
    ndcg, fer = first_stage_score(SMALL, SUBSET)
    assert ndcg == pytest.approx((NDCG_RANK2 + 1.0) / 2, abs=1e-12)  # A's a2 is 2nd in the first stage
    assert fer == 1.0  # the first stage answers every query


def test_settings_from_params_keep_defaults_for_what_a_trial_did_not_draw():
    s = Settings.from_params({"top_k_retriever": 50, "top_k_rerank": 5, "fusion": "rrf", "k0": 7})
    assert s == Settings(50, 5, "rrf", k0=7, alpha=1.0, norm="min-max", calibration="sigmoid", gate="reranker", threshold=0.0)
