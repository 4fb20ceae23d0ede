"""study: storage errors, the select/confirm split, staged subsets, and the Optuna study on the
seeded synthetic world (real sqlite/journal storage)."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from rerank_lab.errors import ConfigError, InputError
from rerank_lab.optuna_storage import WORKER, WORKER_ATTR
from rerank_lab.policy import QueryCandidates, Settings, Subset, System, sigmoid
from rerank_lab.study import TuneInputs, _wait_for_other_workers, open_storage, select_confirm, staged_subsets, study_name, tune
from rerank_lab.tune import TuneConfig
from tests.tune_world import CANDS, DEPTH, HAS_EVIDENCE, IDS, NO_EVIDENCE, QRELS, RERANKED


def _tune(cfg: TuneConfig, url: str | None = None, fingerprint: str = "fp", ids: list[str] = IDS, cands=CANDS):
    return tune(cfg, TuneInputs({cfg.split: {q: cands[q] for q in ids}}, QRELS, DEPTH, fingerprint), url)


def _select(cfg: TuneConfig) -> Subset:
    """The select half tune scores on, rebuilt from the public pieces."""
    sel, _ = select_confirm(IDS, HAS_EVIDENCE, cfg.confirm_fraction, cfg.seed)
    return Subset([q for q in sel if q in HAS_EVIDENCE], [q for q in sel if q not in HAS_EVIDENCE], QRELS)


def test_world_is_what_it_says():
    assert len(NO_EVIDENCE) == 14 and len(HAS_EVIDENCE) == 26
    assert any(q in QRELS for q in NO_EVIDENCE) and any(q not in QRELS for q in NO_EVIDENCE)


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


def test_open_storage_masks_the_password_of_a_url_it_cannot_open():
    with pytest.raises(ConfigError) as info:
        open_storage("postgresql://rl:s3cr%2Ft@127.0.0.1:1/db")  # closed port (or no driver)
    assert "cannot open the Optuna storage 'postgresql://rl:***@127.0.0.1:1/db': " in str(info.value)
    assert "s3cr" not in str(info.value)


def test_a_storage_url_can_come_from_the_environment(tmp_path, monkeypatch):
    # tune.storage: env:NAME -- the URL (a server's, with its password) stays out of params.yaml
    monkeypatch.setenv("RERANK_LAB_OPTUNA_URL", f"journal:{tmp_path}/j.log")
    result = _tune(TuneConfig(n_trials=3, epsilon=1.0, storage="env:RERANK_LAB_OPTUNA_URL"), "env:RERANK_LAB_OPTUNA_URL")
    assert result.summary["trials"] == result.summary["trials_this_run"] == 3
    trials = optuna.load_study(study_name=result.summary["study"], storage=open_storage(f"journal:{tmp_path}/j.log")).trials
    assert len(trials) == 3 and {t.user_attrs["worker"] for t in trials} == {WORKER}  # each trial names its worker


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_trial_left_running_by_a_killed_worker_is_failed_and_not_waited_for(tmp_path):
    # a worker killed on this machine leaves a trial running for ever: the next run marks it failed,
    # frees its place in the budget, and ends at once, choosing among the finished trials
    url = f"journal:{tmp_path}/j.log"
    first = _tune(TuneConfig(n_trials=2, epsilon=1.0), url)
    left = optuna.load_study(study_name=first.summary["study"], storage=open_storage(url)).ask()
    left.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{_dead_pid()}")
    again = _tune(TuneConfig(n_trials=5, epsilon=1.0), url)
    assert again.summary["trials_this_run"] == 3 and again.summary["complete"] + again.summary["pruned"] == 5
    states = [t.state.name for t in optuna.load_study(study_name=first.summary["study"], storage=open_storage(url)).trials]
    assert states[2] == "FAIL" and "RUNNING" not in states


def _running_trial(url: str, worker: str, name: str = "s"):
    study = optuna.create_study(study_name=name, storage=open_storage(url), direction="maximize", load_if_exists=True)
    trial = study.ask()
    trial.set_user_attr(WORKER_ATTR, worker)
    return study, trial


def test_a_live_worker_s_running_trial_is_waited_for_even_if_it_began_first(tmp_path):
    # another worker's trial, already running when this worker opened the study, is its current
    # one: this run ends when it finishes, so both workers choose among the same trials
    url, cfg = f"journal:{tmp_path}/j.log", TuneConfig(n_trials=3, epsilon=1.0)
    study, trial = _running_trial(url, "another-machine:1", study_name(cfg, "fp"))
    threading.Timer(3.0, lambda: study.tell(trial, state=optuna.trial.TrialState.PRUNED)).start()
    result = _tune(cfg, url)
    assert result.summary["trials_this_run"] == 2 and result.summary["complete"] + result.summary["pruned"] == 3
    assert study.trials[0].state.name == "PRUNED"


def test_a_trial_running_since_before_the_timeout_is_not_waited_for(tmp_path):
    # a worker that died on another machine: nothing here can tell, but a tune trial takes seconds
    study, _ = _running_trial(f"journal:{tmp_path}/j.log", "another-machine:1")
    time.sleep(1.0)
    began = time.monotonic()
    _wait_for_other_workers(study, timeout=0.8)
    assert time.monotonic() - began < 0.5
    assert [t.state.name for t in study.trials] == ["RUNNING"]  # left alone: it may yet finish


@pytest.mark.parametrize(
    ("url", "pattern"),
    [
        (
            "env:RERANK_LAB_NO_SUCH_URL",
            r"^tune\.storage is env:RERANK_LAB_NO_SUCH_URL, but \$RERANK_LAB_NO_SUCH_URL is not set \(fix: export ",
        ),
        (
            "env:no such",
            r"^tune\.storage 'env:no such' does not name an environment variable \(fix: write e\.g\. env:RERANK_LAB_OPTUNA_URL\)$",
        ),
    ],
)
def test_an_environment_reference_that_gives_no_url_is_one_line(monkeypatch, url, pattern):
    monkeypatch.delenv("RERANK_LAB_NO_SUCH", raising=False)
    with pytest.raises(ConfigError, match=pattern):
        open_storage(url)


def test_params_refuse_a_storage_url_with_a_password():
    from rerank_lab.hpo_space import parse_config

    fix = r"\(fix: write {}\.storage: env:RERANK_LAB_OPTUNA_URL and export RERANK_LAB_OPTUNA_URL=<the URL> where the workers run"
    shown = r"holds a password, which params\.yaml would commit to git, got 'postgresql://rl:\*\*\*@db:5432/optuna' "
    with pytest.raises(ConfigError, match=r"^tune\.storage: " + shown + fix.format("tune")) as info:
        TuneConfig(storage="postgresql://rl:pw-1234@db:5432/optuna")
    assert "pw-1234" not in str(info.value)
    with pytest.raises(ConfigError, match=r"^hpo\.storage: " + shown + fix.format("hpo")):
        parse_config({"hpo": {"space": {"train.epochs": [1, 2]}, "storage": "postgresql://rl:pw-1234@db:5432/optuna"}})
    # without a password (libpq reads PGPASSWORD or ~/.pgpass), or from the environment: accepted
    assert TuneConfig(storage="postgresql://rl@db:5432/optuna").storage == "postgresql://rl@db:5432/optuna"
    assert parse_config({"hpo": {"space": {"train.epochs": [1, 2]}, "storage": "env:RERANK_LAB_OPTUNA_URL"}}).storage.startswith("env:")


@pytest.mark.parametrize("url", ["sqlite:///{tmp}/deeper/s.db", "journal:{tmp}/j.log"])
def test_open_storage_good_urls_hold_a_study(tmp_path, url):
    url = url.format(tmp=tmp_path)
    storage = open_storage(url)
    study = optuna.create_study(study_name="s", storage=storage)
    study.enqueue_trial({"x": 1.0})
    study.optimize(lambda t: t.suggest_float("x", 0, 2), n_trials=1)
    again = optuna.load_study(study_name="s", storage=open_storage(url))  # persisted, reopened
    assert [t.params for t in again.trials] == [{"x": 1.0}]


@pytest.mark.parametrize(("url", "file"), [("sqlite:///studies/s.db", "studies/s.db"), ("journal:j.log", "j.log")])
def test_a_relative_storage_path_lies_in_the_per_user_cache(tmp_path, monkeypatch, url, file):
    """tune.storage with a relative path is one study for every workspace: a queued experiment runs
    in a temporary one (.dvc/tmp/exps/...), where a workspace-relative file would be a new study."""
    monkeypatch.setenv("RERANK_LAB_CACHE", str(tmp_path / "cache"))
    for workspace in ("a", "b"):
        (tmp_path / workspace).mkdir()
        monkeypatch.chdir(tmp_path / workspace)
        study = optuna.create_study(study_name="s", storage=open_storage(url), load_if_exists=True)
        study.optimize(lambda t: t.suggest_float("x", 0, 2), n_trials=1)
    assert len(optuna.load_study(study_name="s", storage=open_storage(url)).trials) == 2  # both runs, one study
    assert (tmp_path / "cache" / file).is_file()
    assert not any((tmp_path / "a").iterdir()) and not any((tmp_path / "b").iterdir())


# --- select/confirm and stages -----------------------------------------------------------------


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


def test_a_dev_split_without_no_evidence_queries_is_tuned_unconstrained_and_says_so(caplog):
    # a BEIR dataset (every query has a relevant doc) in a grid whose tune.epsilon is 0.2: it must be
    # tuned, not fail after every upstream stage ran -- exactly as with epsilon 1, the metrics saying so
    evidence_only = sorted(HAS_EVIDENCE)
    with caplog.at_level("WARNING", logger="rerank_lab.study"):
        strict = _tune(TuneConfig(epsilon=0.2, n_trials=12), None, ids=evidence_only)
    assert "0 no-evidence queries" in caplog.text and "tune.epsilon 0.2 not applied" in caplog.text
    free = _tune(TuneConfig(epsilon=1.0, n_trials=12), None, ids=evidence_only)
    assert strict.summary["false_evidence_constrained"] is False and free.summary["false_evidence_constrained"] is False
    assert strict.summary["epsilon"] == 0.2  # what was asked, next to the flag saying it was not applied
    assert strict.best == free.best and strict.summary["best_confirm_ndcg@10"] == free.summary["best_confirm_ndcg@10"]
    assert strict.summary["select_no_evidence"] == strict.summary["confirm_no_evidence"] == 0
    assert strict.summary["select_queries"] + strict.summary["confirm_queries"] == len(evidence_only)


def test_a_dev_split_with_no_evidence_queries_is_constrained():
    result = _tune(TuneConfig(epsilon=0.2, n_trials=12), None)
    assert result.summary["false_evidence_constrained"] is True
    assert all(t["feasible"] == (t["false_evidence"] <= 0.2 + 1e-12) for t in result.trials if t["false_evidence"] is not None)


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
    ndcg, fer = System.build(CANDS, result.calibrators, result.answerability).score(result.best, _select(cfg))
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
    """Scratch copies of the package in which one module the objective runs changed -- evaluate.py
    (its nDCG), policy.py (the system), answerability.py (the gate's model) -- each give another study
    name for the same inputs, so a shared study is never continued by other code."""
    import shutil
    import subprocess
    import sys

    import rerank_lab

    src = Path(rerank_lab.__file__).parent
    changed = ("evaluate.py", "policy.py", "answerability.py")
    for copy in ("same", *changed):
        shutil.copytree(src, tmp_path / copy / "rerank_lab", ignore=shutil.ignore_patterns("__pycache__"))
        if copy != "same":
            with open(tmp_path / copy / "rerank_lab" / copy, "a") as fh:
                fh.write("\n# a change to the objective's code\n")
    code = "from rerank_lab.study import study_name; from rerank_lab.tune import TuneConfig; print(study_name(TuneConfig(), 'fp'))"
    names = {
        copy: subprocess.run(
            [sys.executable, "-c", code], env={"PYTHONPATH": str(tmp_path / copy)}, capture_output=True, text=True, check=True
        ).stdout
        for copy in ("same", *changed)
    }
    assert names["same"] == study_name(TuneConfig(), "fp") + "\n"  # the copy is this code
    assert len(set(names.values())) == 1 + len(changed)  # every change gives its own name


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
    ndcg, fer = System.build(CANDS, {"sigmoid": sigmoid}).score(Settings(top_k_retriever=DEPTH, top_k_rerank=10), _select(cfg))
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
