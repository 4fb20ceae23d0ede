"""rerank-lab hpo: the search space checked before anything runs, one line per bad input."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from rerank_lab import cli
from rerank_lab.hpo import distributions
from rerank_lab.hpo_space import HpoConfig

REPO = Path(__file__).resolve().parents[1]


def _params(tmp_path: Path, hpo: dict) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["hpo"].update(hpo)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("hpo", "args", "message"),
    [
        ({"space": {"train.learning_rat": {"low": 1e-5, "high": 1e-4}}}, [], "hpo.space.train.learning_rat: names no key of params.yaml"),
        ({"space": {"train.learning_rate": {"low": 1e-4, "high": 1e-5}}}, [], "is an empty range: low 0.0001 is not below high 1e-05"),
        ({"space": {"train.list_size": []}}, [], "hpo.space.train.list_size: is an empty list: nothing to choose"),
        (
            {"space": {"train.list_size": {"low": 1, "high": 8}}},
            [],
            "train.list_size=1: train.list_size: must be >= 2, got 1 (fix: e.g. 8; or change 1 in hpo.space.train.list_size)",
        ),
        ({"space": {"train.trial": ["x/1"]}}, [], "hpo.space.train.trial: is set by rerank-lab hpo itself"),
        ({"space": {}}, [], "hpo.space: names no key"),
        ({"n_trials": 0}, [], "hpo.n_trials: "),
        ({}, ["--trials", "0"], "--trials 0: a study needs a budget of at least 1 trial"),
    ],
)
def test_bad_input_is_one_line_and_starts_no_study(tmp_path, monkeypatch, capsys, hpo, args, message):
    path = _params(tmp_path, hpo)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["rerank-lab", "hpo", "run", "--params", str(path), *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert message in err and "(fix: " in err
    assert not list(Path(os.environ["RERANK_LAB_CACHE"]).rglob("optuna.db"))  # no study was opened
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_ranges_become_int_float_log_and_choice_distributions():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    space = {
        "train.learning_rate": {"low": 1e-5, "high": 1e-4, "log": True},
        "train.epochs": {"low": 1, "high": 3},
        "train.warmup_ratio": {"low": 0.0, "high": 0.2, "step": 0.05},
        "train.list_size": [4, 8],
    }
    dists = distributions(params, HpoConfig(space=space))
    lr, epochs, warmup, size = (dists[k] for k in space)
    assert (type(lr).__name__, lr.log, type(epochs).__name__, epochs.step, warmup.step, size.choices) == (
        "FloatDistribution",
        True,
        "IntDistribution",
        1,
        0.05,
        (4, 8),
    )
