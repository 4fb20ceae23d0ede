"""tune: config and storage errors, the system over cached scores by hand and against ranx, the
select/confirm split, and the Optuna study on a seeded synthetic fixture (real sqlite/journal storage)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
from ranx import Run as RanxRun
from ranx import fuse

from rerank_lab.errors import ConfigError, InputError
from rerank_lab.tune import (
    QueryCandidates,
    Settings,
    Subset,
    TuneConfig,
    answer,
    calibrated,
    false_evidence,
    head_scores,
    open_storage,
    score,
    select_confirm,
    sigmoid,
    staged_subsets,
    study_name,
    tune,
)

N_QUERIES, DEPTH, RERANKED = 40, 30, 10


def _world(seed: int = 0) -> tuple[dict[str, QueryCandidates], dict[str, dict[str, int]]]:
    """40 queries, 30 first-stage docs each, reranker logits for the top 10.

    Every third query (14 of 40) is no-evidence: absent from the qrels, or (every sixth) judged
    with grade 0 only. A has-evidence query has one relevant doc somewhere in its top 10, which the
    reranker scores ~5 logits above the rest; the first stage does not know which one it is.
    """
    rng = np.random.default_rng(seed)
    cands, qrels = {}, {}
    for i in range(N_QUERIES):
        qid = f"q{i:02d}"
        docs = [f"{qid}-d{j:02d}" for j in range(DEPTH)]
        first_stage = np.sort(rng.normal(10.0, 2.0, DEPTH))[::-1].copy()
        reranker = rng.normal(-2.0, 1.5, RERANKED)
        if i % 3:
            pos = int(rng.integers(0, RERANKED))
            reranker[pos] += 5.0
            qrels[qid] = {docs[pos]: 1}
        elif i % 6 == 0:
            qrels[qid] = {docs[0]: 0}  # judged, nothing relevant: still no-evidence
        cands[qid] = QueryCandidates(docs, first_stage, reranker)
    return cands, qrels


CANDS, QRELS = _world()
IDS = sorted(CANDS)
HAS_EVIDENCE = {q for q, docs in QRELS.items() if any(g > 0 for g in docs.values())}
NO_EVIDENCE = sorted(set(IDS) - HAS_EVIDENCE)


def _tune(cfg: TuneConfig, url: str | None = None, fingerprint: str = "fp", ids: list[str] = IDS, cands=CANDS):
    return tune(cfg, cands, QRELS, ids, url, fingerprint, DEPTH)


def _select(cfg: TuneConfig) -> Subset:
    """The select half tune scores on, rebuilt from the public pieces."""
    sel, _ = select_confirm(IDS, HAS_EVIDENCE, cfg.confirm_fraction, cfg.seed)
    return Subset([q for q in sel if q in HAS_EVIDENCE], [q for q in sel if q not in HAS_EVIDENCE], QRELS)


def test_world_is_what_it_says():
    assert len(NO_EVIDENCE) == 14 and len(HAS_EVIDENCE) == 26
    assert any(q in QRELS for q in NO_EVIDENCE) and any(q not in QRELS for q in NO_EVIDENCE)


# --- TuneConfig ----------------------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [-0.1, 1.5, "0.2", True, float("nan"), None])
def test_config_rejects_bad_epsilon(epsilon):
    with pytest.raises(ConfigError, match=r"tune\.epsilon must be a number in \[0, 1\]") as info:
        TuneConfig(epsilon=epsilon)
    assert repr(epsilon) in str(info.value)


@pytest.mark.parametrize("epsilon", [0, 0.0, 0.2, 1, 1.0])
def test_config_accepts_epsilon_in_range(epsilon):
    assert TuneConfig(epsilon=epsilon).epsilon == epsilon


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"pruner": "random"}, r"unknown pruner 'random' \(fix: use one of: hyperband, median, none, successive-halving\)"),
        ({"calibrations": ["sigmoid", "temperature"]}, r"unknown calibration 'temperature' \(fix: use one of: isotonic, platt, sigmoid\)"),
        ({"fusions": ("rrf", "combmnz")}, r"unknown fusion 'combmnz' \(fix: use one of: none, rrf, weighted\)"),
        ({"norms": ("max",)}, r"unknown norm 'max' \(fix: use one of: min-max, rank, zmuv\)"),
        ({"fusions": ()}, r"unknown fusion '\(empty\)' \(fix: use one of: none, rrf, weighted\)"),
    ],
)
def test_config_rejects_unknown_names(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        TuneConfig(**kwargs)


@pytest.mark.parametrize("bad", [(0, 10), (20, 10), (-5, 5), (5,), (1, 2, 3)])
@pytest.mark.parametrize("name", ["top_k_retriever", "k0"])
def test_config_rejects_bad_ranges(name, bad):
    with pytest.raises(ConfigError, match=rf"tune\.{name} must be \[low, high\] with 1 <= low <= high"):
        TuneConfig(**{name: bad})


def test_config_accepts_lists_and_a_single_point_range():
    cfg = TuneConfig(top_k_retriever=[5, 5], k0=[1, 200], fusions=["none"])
    assert cfg.top_k_retriever == (5, 5) and cfg.k0 == (1, 200) and cfg.fusions == ("none",)
    hash(cfg)  # frozen with tuples: usable as a key


@pytest.mark.parametrize("kwargs", [{"confirm_fraction": 0.0}, {"confirm_fraction": 1.0}, {"n_trials": -1}, {"stages": 0}])
def test_config_rejects_other_bad_numbers(kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        TuneConfig(**kwargs)


# --- storage -------------------------------------------------------------------------------------


def _bad_urls(tmp_path: Path) -> list[str]:
    (tmp_path / "a-file").write_text("not a folder")
    return [
        f"sqlite:///{tmp_path}/a-file/sub/s.db",  # the parent is a regular file
        f"journal:{tmp_path}/missing/j.log",  # the folder does not exist
        "postgresql://u@127.0.0.1:1/db",  # closed port (or no driver): either way unreachable
    ]


@pytest.mark.parametrize("which", [0, 1, 2])
def test_open_storage_names_the_url_it_cannot_open(tmp_path, which):
    url = _bad_urls(tmp_path)[which]
    with pytest.raises(ConfigError, match="cannot open the Optuna storage") as info:
        open_storage(url)
    assert url in str(info.value)
    assert "tune.storage" in str(info.value)  # the fix says which setting to change
    assert not (tmp_path / "missing").exists()  # a journal in a missing folder does not create it


@pytest.mark.parametrize("url", ["sqlite:///{tmp}/deeper/s.db", "journal:{tmp}/j.log"])
def test_open_storage_good_urls_hold_a_study(tmp_path, url):
    url = url.format(tmp=tmp_path)
    storage = open_storage(url)
    study = optuna.create_study(study_name="s", storage=storage)
    study.enqueue_trial({"x": 1.0})
    study.optimize(lambda t: t.suggest_float("x", 0, 2), n_trials=1)
    again = optuna.load_study(study_name="s", storage=open_storage(url))  # persisted, reopened
    assert [t.params for t in again.trials] == [{"x": 1.0}]


# --- the system over cached scores: answer and head_scores by hand -------------------------------

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


# --- select/confirm, stages, false evidence -------------------------------------------------


EV30 = {f"e{i:02d}" for i in range(20)}
IDS30 = sorted(EV30 | {f"n{i:02d}" for i in range(10)})


def test_select_confirm_is_a_stratified_partition():
    sel, conf = select_confirm(IDS30, EV30, 0.3, seed=7)
    assert not set(sel) & set(conf)
    assert sorted(sel + conf) == IDS30
    assert sel == sorted(sel) and conf == sorted(conf)
    # 30% of each stratum held out: 6 of the 20 has-evidence, 3 of the 10 no-evidence
    assert (len([q for q in conf if q in EV30]), len([q for q in conf if q not in EV30])) == (6, 3)
    assert (len([q for q in sel if q in EV30]), len([q for q in sel if q not in EV30])) == (14, 7)


def test_select_confirm_depends_on_the_seed_only():
    first = select_confirm(IDS30, EV30, 0.5, seed=1)
    assert select_confirm(list(reversed(IDS30)), set(EV30), 0.5, seed=1) == first  # input order does not matter
    assert select_confirm(IDS30, EV30, 0.5, seed=2) != first
    for seed in (1, 2):
        sel, conf = select_confirm(IDS30, EV30, 0.5, seed)
        assert len([q for q in conf if q in EV30]) == 10 and len([q for q in conf if q not in EV30]) == 5


def test_false_evidence():
    run = {"n1": {"d": 1.0}, "n2": {}, "e1": {"d": 1.0}}
    assert false_evidence(run, ["n1", "n2", "n3", "n4"]) == 0.25  # n2 answered nothing, n3/n4 absent
    assert false_evidence(run, ["n1"]) == 1.0
    assert false_evidence(run, ["n3"]) == 0.0
    assert false_evidence(run, []) == 0.0  # no no-evidence queries: nothing to count


def test_staged_subsets_grow_to_the_whole_subset():
    subset = Subset([f"e{i}" for i in range(10)], [f"n{i}" for i in range(5)], {"e0": {"x": 1}})
    stages = staged_subsets(subset, 4, seed=3)
    assert [(len(s.evidence), len(s.no_evidence)) for s in stages] == [(3, 2), (5, 3), (8, 4), (10, 5)]
    for small, big in zip(stages, stages[1:], strict=False):
        assert big.evidence[: len(small.evidence)] == small.evidence  # prefixes of one shuffle
        assert big.no_evidence[: len(small.no_evidence)] == small.no_evidence
    assert sorted(stages[-1].evidence) == subset.evidence and sorted(stages[-1].no_evidence) == subset.no_evidence
    assert all(s.qrels is subset.qrels for s in stages)
    assert subset.evidence == [f"e{i}" for i in range(10)]  # the input is not shuffled in place
    again = staged_subsets(subset, 4, seed=3)
    assert [s.evidence for s in again] == [s.evidence for s in stages]
    assert [s.evidence for s in staged_subsets(subset, 4, seed=4)] != [s.evidence for s in stages]
    one = staged_subsets(subset, 1, seed=3)
    assert len(one) == 1 and sorted(one[0].evidence) == subset.evidence


# --- the study ----------------------------------------------------------------------------------


def test_tune_needs_no_evidence_queries_unless_epsilon_is_1(tmp_path):
    evidence_only = sorted(HAS_EVIDENCE)
    with pytest.raises(InputError, match=r"0 no-evidence queries, too few for a false-evidence constraint .*tune\.epsilon: 1"):
        _tune(TuneConfig(epsilon=0.2, n_trials=10), f"sqlite:///{tmp_path}/a.db", ids=evidence_only)
    assert not optuna.get_all_study_summaries(open_storage(f"sqlite:///{tmp_path}/a.db"))  # failed before creating a study
    result = _tune(TuneConfig(epsilon=1.0, n_trials=10), f"journal:{tmp_path}/b.log", ids=evidence_only)
    assert result.summary["trials"] == 10
    assert result.summary["select_no_evidence"] == result.summary["confirm_no_evidence"] == 0
    assert result.summary["select_queries"] + result.summary["confirm_queries"] == len(evidence_only)


def test_tune_raises_when_no_trial_is_feasible(tmp_path):
    # the no-evidence queries' reranker is certain (sigmoid(50) == 1.0): no threshold in [0, 1] abstains
    cands = {q: (QueryCandidates(c.docs, c.first_stage, np.full(RERANKED, 50.0)) if q in NO_EVIDENCE else c) for q, c in CANDS.items()}
    cfg = TuneConfig(epsilon=0.5, n_trials=10, calibrations=("sigmoid",), gates=("reranker",))
    with pytest.raises(InputError, match=r"no trial of study 'tune-bm25-[0-9a-f]{12}' met false-evidence <= 0\.5 \(10 trials\)"):
        _tune(cfg, f"journal:{tmp_path}/j.log", cands=cands)


@pytest.mark.parametrize("epsilon", [0.0, 0.2])
def test_best_meets_the_false_evidence_constraint(tmp_path, epsilon):
    cfg = TuneConfig(epsilon=epsilon, n_trials=30)
    result = _tune(cfg, f"journal:{tmp_path}/j.log")
    summary = result.summary
    assert summary["best_select_false_evidence"] <= epsilon
    assert summary["default_select_false_evidence"] == 1.0  # the untuned system always answers: infeasible
    assert summary["best_trial"] != 0
    # recomputed from the returned settings and calibrators, not from the study's bookkeeping
    probs = calibrated(CANDS, result.calibrators)
    answerable = result.answerability.predict(CANDS) if result.answerability else None
    ndcg, fer = score(CANDS, probs, result.best, _select(cfg), answerable)
    assert fer <= epsilon
    assert ndcg == pytest.approx(summary["best_select_ndcg@10"], abs=1e-6)
    assert summary["best"] == {f: getattr(result.best, f) for f in summary["best"]}
    # the reported trial is the feasible one with the highest value
    feasible = [t for t in result.trials if t["state"] == "complete" and t["feasible"]]
    assert all(t["false_evidence"] <= epsilon for t in feasible)
    assert max(t["value"] for t in feasible) == pytest.approx(ndcg, abs=1e-12)
    # the top-k sweep of the best settings has one row per reranked depth; its own depth is the best's score
    assert [r["top_k_rerank"] for r in result.topk] == list(range(1, RERANKED + 1))
    assert result.topk[result.best.top_k_rerank - 1]["select_ndcg@10"] == pytest.approx(ndcg, abs=1e-12)


def test_the_confirm_half_reports_against_the_untuned_reranker_and_the_first_stage():
    """The choice is judged on the held-out half against both references, separately."""
    import pytrec_eval

    cfg = TuneConfig(n_trials=20, epsilon=1.0)
    summary = _tune(cfg).summary
    _, conf = select_confirm(IDS, HAS_EVIDENCE, cfg.confirm_fraction, cfg.seed)
    judged = {q: QRELS[q] for q in conf if q in HAS_EVIDENCE}
    # the first stage alone, computed independently: its own order, trec_eval's nDCG@10
    run = {q: dict(zip(CANDS[q].docs, CANDS[q].first_stage.tolist())) for q in judged}
    values = pytrec_eval.RelevanceEvaluator(judged, {"ndcg_cut.10"}).evaluate(run)
    assert summary["first_stage_confirm_ndcg@10"] == round(sum(v["ndcg_cut_10"] for v in values.values()) / len(judged), 6)
    assert summary["first_stage_confirm_false_evidence"] == 1.0  # it answers every no-evidence query
    assert summary["beats_first_stage_on_confirm"] == (summary["best_confirm_ndcg@10"] > summary["first_stage_confirm_ndcg@10"])
    assert summary["beats_untuned_on_confirm"] == (summary["best_confirm_ndcg@10"] > summary["default_confirm_ndcg@10"])
    assert summary["meets_epsilon_on_confirm"] is True and "confirmed" not in summary
    # this world's first stage does not know where the relevant doc is; the reranker does
    assert summary["first_stage_confirm_ndcg@10"] < summary["default_confirm_ndcg@10"]


def test_the_default_study_is_fresh_and_reproducible():
    """No storage: each run is a new seeded in-memory study -- same inputs, same everything."""
    cfg = TuneConfig(n_trials=12)
    first, second = _tune(cfg), _tune(cfg)
    assert first.summary == second.summary and first.trials == second.trials and first.topk == second.topk
    assert first.summary["trials"] == first.summary["trials_this_run"] == 12
    assert _tune(TuneConfig(n_trials=12, seed=7)).trials != first.trials  # the seed matters


def test_a_shared_study_fills_up_to_n_trials(tmp_path):
    """With a storage URL (opt-in, for several workers) n_trials is the study's total."""
    url, cfg = f"sqlite:///{tmp_path}/s.db", TuneConfig(n_trials=8)
    first = _tune(cfg, url).summary
    again = _tune(cfg, url).summary  # nothing missing: no new trials, the same choice
    more = _tune(TuneConfig(n_trials=20), url).summary  # "more trials" is a params change
    assert [s["trials"] for s in (first, again, more)] == [8, 8, 20]
    assert [s["trials_this_run"] for s in (first, again, more)] == [8, 0, 12]
    assert first["study"] == again["study"] == more["study"] == study_name(cfg, "fp")
    assert again["best"] == first["best"] and more["best_select_ndcg@10"] >= first["best_select_ndcg@10"]
    # the resumed run does not replay the first run's draws
    trials = optuna.load_study(study_name=first["study"], storage=open_storage(url)).trials
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)
    # other inputs (fingerprint) or another search space: a separate study beside it
    other = _tune(TuneConfig(n_trials=5), url, fingerprint="other inputs").summary
    assert other["study"] != first["study"] and other["trials"] == 5
    assert study_name(TuneConfig(n_trials=8, epsilon=0.3), "fp") != first["study"]
    assert study_name(TuneConfig(n_trials=99), "fp") == first["study"]  # n_trials is not part of the search
    assert study_name(TuneConfig(study_name="mine"), "fp") == "mine"
    assert len(optuna.get_all_study_summaries(open_storage(url))) == 2


def test_the_study_name_covers_the_objective_s_code(tmp_path):
    """A scratch copy of the package whose evaluate.py (the objective's nDCG) changed gives another
    study name for the same inputs, so a shared study is never continued by other code."""
    import shutil
    import subprocess
    import sys

    import rerank_lab

    src = Path(rerank_lab.__file__).parent
    shutil.copytree(src, tmp_path / "a" / "rerank_lab")
    shutil.copytree(src, tmp_path / "b" / "rerank_lab")
    with open(tmp_path / "b" / "rerank_lab" / "evaluate.py", "a") as fh:
        fh.write("\n# a change to the objective's code\n")
    code = "from rerank_lab.tune import TuneConfig, study_name; print(study_name(TuneConfig(), 'fp'))"
    env = {d: {"PYTHONPATH": str(tmp_path / d)} for d in ("a", "b")}
    names = [
        subprocess.run([sys.executable, "-c", code], env=env[d], capture_output=True, text=True, check=True).stdout for d in ("a", "b")
    ]
    assert names[0] == study_name(TuneConfig(), "fp") + "\n"  # the copy is this code
    assert names[1] != names[0]


def test_same_seed_fresh_storages_reproduce(tmp_path):
    cfg = TuneConfig(n_trials=10)
    a = _tune(cfg, f"sqlite:///{tmp_path}/a.db")
    b = _tune(cfg, f"journal:{tmp_path}/b.log")
    assert a.summary == b.summary
    assert a.trials == b.trials
    c = _tune(TuneConfig(n_trials=10, seed=43), f"journal:{tmp_path}/c.log")
    assert [t["params"] for t in c.trials[1:]] != [t["params"] for t in a.trials[1:]]  # the seed matters


def test_first_trial_is_the_untuned_default(tmp_path):
    url, cfg = f"journal:{tmp_path}/j.log", TuneConfig(n_trials=10)
    result = _tune(cfg, url)
    # the score stage's own run: the whole first-stage pool, its head reranked, never abstaining
    assert result.default == Settings(top_k_retriever=DEPTH, top_k_rerank=10)
    first = optuna.load_study(study_name=result.summary["study"], storage=open_storage(url)).trials[0]
    assert first.params == {
        "top_k_retriever": DEPTH,
        "top_k_rerank": 10,
        "fusion": "none",
        "calibration": "sigmoid",
        "gate": "reranker",
        "threshold": 0.0,
    }
    assert Settings.from_params(first.params) == result.default
    probs = calibrated(CANDS, {"sigmoid": sigmoid})
    ndcg, fer = score(CANDS, probs, Settings(top_k_retriever=DEPTH, top_k_rerank=10), _select(cfg))
    assert result.summary["default_select_ndcg@10"] == round(ndcg, 6)
    assert result.summary["default_select_false_evidence"] == fer == 1.0
    assert first.value == pytest.approx(ndcg, abs=1e-12)
    assert 0.5 < ndcg < 1.0  # the reranker finds most relevant docs, not all of them first
    # the default is enqueued once: adding trials to the shared study does not add it again
    _tune(TuneConfig(n_trials=15), url)
    trials = optuna.load_study(study_name=result.summary["study"], storage=open_storage(url)).trials
    assert [t.number for t in trials if t.params.get("threshold") == 0.0] == [0]


@pytest.mark.parametrize("pruner", ["none", "median", "successive-halving", "hyperband"])
def test_every_pruner_runs(tmp_path, pruner):
    summary = _tune(TuneConfig(pruner=pruner, n_trials=20, epsilon=1.0), f"journal:{tmp_path}/j.log").summary
    assert summary["trials"] == 20
    assert summary["complete"] + summary["pruned"] == 20
    if pruner == "none":
        assert summary["pruned"] == 0
    assert not math.isnan(summary["best_select_ndcg@10"])


# --- the stage end to end -------------------------------------------------------------------------


def _stage_inputs(root: Path) -> dict[str, dict[str, QueryCandidates]]:
    """The world as the stage reads it: a dataset (validation + test), first-stage and reranked runs,
    and validation qrels only (no test qrels: tune must not need them). Returns each split's candidates."""
    import datasets

    from rerank_lab.io.datasets import save_dataset
    from rerank_lab.io.qrels import write_qrels
    from rerank_lab.io.scores import write_scores
    from rerank_lab.io.trec import write_run
    from rerank_lab.schema import to_dataset

    other = sorted(_world(seed=1)[0].items())[:6]
    splits = {
        "validation": CANDS,
        "test": {f"t{q}": QueryCandidates([f"t{d}" for d in c.docs], c.first_stage, c.reranker) for q, c in other},
    }

    def row(qid: str) -> dict:
        return {"id": qid, "query": f"query {qid}", "texts": ["Some text."], "text_ids": ["x"], "context_spans": [[[0, 10]]], "labels": [1]}

    save_dataset(datasets.DatasetDict({s: to_dataset([row(q) for q in sorted(c)]) for s, c in splits.items()}), root / "dataset")
    for split, cands in splits.items():
        write_run(
            {q: dict(zip(c.docs, c.first_stage.tolist())) for q, c in cands.items()}, root / "runs" / "bm25" / f"{split}.trec", tag="bm25"
        )
    # the score stage's table: raw reranker scores of each query's first-stage head
    write_scores({("bm25", s): {q: dict(zip(c.docs, c.reranker.tolist())) for q, c in cands.items()} for s, cands in splits.items()},
                 root / "scored" / "scores.tsv")  # fmt: skip
    write_qrels(QRELS, root / "qrels" / "validation.tsv")
    return splits


def test_tune_stage_end_to_end(tmp_path):
    from rerank_lab.io.trec import read_run
    from rerank_lab.tune import tune_stage

    splits = _stage_inputs(tmp_path)
    cfg = TuneConfig(n_trials=10)

    def stage(out: str, url: str | None = None) -> dict:
        return tune_stage(
            cfg, "minilm", tmp_path / "dataset", tmp_path / "qrels", tmp_path / "runs", tmp_path / "scored", url, tmp_path / out
        )

    summary = stage("out")
    out = tmp_path / "out"
    best = Settings.from_params(summary["best"])
    written = json.loads((out / "best.json").read_text())
    model = written.pop("answerability_model", None)
    assert written == {"run": "bm25+minilm+tuned", **summary["best"]}
    assert (model is not None) == (best.gate == "answerability")
    assert summary["best_select_false_evidence"] <= cfg.epsilon
    trials = (out / "trials.tsv").read_text().splitlines()
    assert trials[0].split("\t") == ["number", "state", "value", "false_evidence", "feasible", "params"] and len(trials) == 11
    assert len((out / "topk.tsv").read_text().splitlines()) == RERANKED + 1
    for split, cands in splits.items():
        lines = [ln.split("\t") for ln in (out / "probabilities" / f"{split}.tsv").read_text().splitlines()]
        assert lines[0] == ["run", "query_id", "doc_id", "score", "p_sigmoid", "p"]
        assert len(lines) == 1 + len(cands) * RERANKED
        probs: dict[str, list[float]] = {}
        for _, qid, doc, raw, p_sigmoid, p in lines[1:]:
            assert doc == cands[qid].docs[len(probs.get(qid, []))] and float(raw) in cands[qid].reranker
            assert float(p_sigmoid) == pytest.approx(float(sigmoid(np.array(float(raw)))), abs=1e-12)
            probs.setdefault(qid, []).append(float(p))
        answer_lines = (out / "answerability" / f"{split}.tsv").read_text().splitlines()
        assert answer_lines[0] == "query_id\tp_answerable" and len(answer_lines) == 1 + len(cands)
        answerable = {q: float(p) for q, p in (ln.split("\t") for ln in answer_lines[1:])}
        # the written run is what answer() gives with the written probabilities (abstaining queries absent)
        run = read_run(out / "runs" / "bm25+minilm+tuned" / f"{split}.trec")
        if split == "validation":
            assert 0 < len(run) < len(cands)  # it answers some queries and abstains on others
        assert {q: _order(docs) for q, docs in run.items()} == {
            q: _order(a) for q in cands if (a := answer(cands[q], np.array(probs[q]), best, answerable.get(q)))
        }
    # a rerun with the same inputs gives the same bytes: the study is no state outside the inputs
    assert stage("out2") == summary
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "out2") for p in (tmp_path / "out2").rglob("*") if p.is_file())
    assert all((out / f).read_bytes() == (tmp_path / "out2" / f).read_bytes() for f in files)
    # new qrels are new inputs: another study; a shared storage is filled up to n_trials, not past it
    qrels = tmp_path / "qrels" / "validation.tsv"
    qrels.write_text(qrels.read_text() + "q00\tq00-d05\t0\n")
    url = f"journal:{tmp_path}/optuna.log"
    again = stage("out3", url)
    assert again["trials"] == 10 and again["study"] != summary["study"]
    assert stage("out4", url)["trials"] == 10
