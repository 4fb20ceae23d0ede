"""The train stage's side of a tier-B trial: the dev curve reported to the study, a pruned trial stopped."""

from __future__ import annotations

import optuna
import pytest

from rerank_lab.errors import ConfigError
from rerank_lab.hpo_space import HpoConfig, make_pruner, study_name
from rerank_lab.hpo_trial import TrialLink, link, parse_trial
from rerank_lab.train import train
from tests.test_train import FOUR, VALIDATION, _cfg, _dd

SPACE = {"train.learning_rate": {"low": 1e-5, "high": 1e-4, "log": True}}


def _trial(tmp_path, **hpo) -> tuple[optuna.Study, optuna.trial.Trial, TrialLink]:
    cfg = HpoConfig(space=SPACE, **hpo)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=url, pruner=make_pruner(cfg), direction="maximize")
    trial = study.ask()
    return study, trial, TrialLink(url, "s", trial.number, cfg)


@pytest.mark.parametrize(("prune_below", "pruned", "steps"), [(2.0, 1, 2), (-1.0, 0, 6)])
def test_a_trial_reports_each_dev_evaluation_and_stops_when_pruned(tmp_path, prune_below, pruned, steps):
    # 4 lists, batches of 2, 3 epochs: 6 steps, a dev evaluation after every step; the threshold
    # pruner (nDCG never reaches 2.0) may prune from step 2 on (warm-up 2)
    study, trial, trial_link = _trial(tmp_path, pruner="threshold", prune_below=prune_below, warmup_steps=2)
    metrics, history = train(_cfg(epochs=3, eval_steps=1), _dd(FOUR, VALIDATION), tmp_path / "m", tmp_path / "ck", trial=trial_link)
    assert (metrics["trial_pruned"], metrics["trial_steps"], metrics["steps"]) == (pruned, steps, steps)
    reported = study._storage.get_trial(trial._trial_id).intermediate_values
    dev = {h["step"]: h["eval_dev_mined_ndcg@10"] for h in history if "eval_dev_mined_ndcg@10" in h}
    assert reported == dev and sorted(reported) == list(range(1, steps + 1))
    assert (tmp_path / "m" / "config.json").is_file()  # a pruned trial's model is saved, as of its last step


def test_without_a_trial_nothing_is_reported(tmp_path):
    metrics, _ = train(_cfg(epochs=1), _dd(FOUR, VALIDATION), tmp_path / "m", tmp_path / "ck")
    assert "trial_pruned" not in metrics


def _params(**hpo) -> dict:
    return {
        "datasets": ["a"],
        "train": {"learning_rate": 7e-5, "list_size": 8, "trial": None},
        "hpo": {"space": SPACE, **hpo},
    }


def test_the_study_name_ignores_the_searched_values_and_the_budget_only():
    base = study_name(_params(), HpoConfig(space=SPACE))
    searched = _params()
    searched["train"]["learning_rate"] = 3e-5
    searched["train"]["trial"] = "x/1"
    assert study_name(searched, HpoConfig(space=SPACE)) == base
    assert study_name(_params(), HpoConfig(space=SPACE, n_trials=50, finalists=5, storage="journal:j.log")) == base
    other = _params()
    other["train"]["list_size"] = 4  # a base setting the trials do not search
    assert study_name(other, HpoConfig(space=SPACE)) != base
    assert study_name(_params(), HpoConfig(space=SPACE, seed=1)) != base
    assert study_name(_params(), HpoConfig(space=SPACE, study_name="mine")) == "mine"


def test_link_refuses_a_trial_of_another_study():
    params = _params()
    name = study_name(params, HpoConfig(space=SPACE))
    assert link(params, f"{name}/3").number == 3
    with pytest.raises(ConfigError, match="names study 'hpo-old', but these params and this code make study"):
        link(params, "hpo-old/3")
    with pytest.raises(ConfigError, match="is not <study>/<number>"):
        parse_trial("3")
