"""optuna_storage.run_trials / within_budget: a shared study's budget when two workers both see
its last place free (the check-then-ask race behind the two-worker tune test's flake)."""

from __future__ import annotations

import optuna
import pytest

from rerank_lab.optuna_storage import counted, open_storage, over_budget, run_trials, within_budget


def _workers(tmp_path, n: int = 2) -> list[optuna.Study]:
    """``n`` handles on one study in one journal file, as ``n`` worker processes would hold it."""
    url = f"journal:{tmp_path}/j.log"
    first = optuna.create_study(study_name="s", storage=open_storage(url), direction="maximize")
    return [first, *(optuna.load_study(study_name="s", storage=open_storage(url)) for _ in range(n - 1))]


def _objective(log: list[int]):
    def objective(trial) -> float:
        log.append(trial.number)
        return trial.suggest_float("x", 0.0, 1.0)

    return objective


def test_a_worker_that_asks_after_another_took_the_last_place_does_not_run_its_trial(tmp_path, monkeypatch):
    a, b = _workers(tmp_path)
    assert run_trials(a, _objective([]), 2) == [0, 1]
    # A counts 2 of 3 and asks; in that moment B counts 2 of 3 too, asks first and runs the last place
    ran_b, called = [], []
    ask = a.ask

    def b_asks_first(*args, **kwargs):
        ran_b.extend(run_trials(b, _objective([]), 3))
        return ask(*args, **kwargs)

    monkeypatch.setattr(a, "ask", b_asks_first)
    assert run_trials(a, _objective(called), 3) == [] and called == []  # A's trial was never run
    assert ran_b == [2]
    trials = b.trials
    assert counted(b) == 3 and [t.state.name for t in trials] == ["COMPLETE"] * 3 + ["FAIL"]
    assert [over_budget(t) for t in trials] == [False, False, False, True] and trials[3].params == {}


def test_within_budget_follows_the_order_the_storage_numbered_the_trials(tmp_path):
    # three workers each saw one place left of 1 and asked: only the first-numbered trial runs
    workers = _workers(tmp_path, 3)
    asked = [w.ask() for w in workers]
    assert [within_budget(w, t, 1) for w, t in zip(workers, asked, strict=True)] == [True, False, False]
    assert [t.state.name for t in workers[0].trials] == ["RUNNING", "FAIL", "FAIL"]


def test_a_failing_objective_fails_its_trial_and_raises(tmp_path):
    (study,) = _workers(tmp_path, 1)

    def broken(trial):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_trials(study, broken, 3)
    assert [t.state.name for t in study.trials] == ["FAIL"] and not over_budget(study.trials[0])


def test_run_trials_draws_what_optimize_draws():
    """One worker: the same asks and tells as ``study.optimize``, so a seeded study draws the same points
    (pruned trials included)."""

    def objective(trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.report(x, 0)
        if x < 0.3:
            raise optuna.TrialPruned()
        return x

    def study():
        return optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=3))

    ours, theirs = study(), study()
    run_trials(ours, objective, 15)
    theirs.optimize(objective, n_trials=15)
    assert [(t.state, t.params, t.value) for t in ours.trials] == [(t.state, t.params, t.value) for t in theirs.trials]
