"""A tiny tier-B study end to end: real `dvc exp run` trials on the tiny SciFact pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from rerank_lab.repro import prepare_copy
from tests.test_pipeline import ROOT, TINY_OVERRIDES, _tiny_rationales

TINY = {**TINY_OVERRIDES, "train.eval_steps": 1}  # a dev evaluation, a report to the trial, after every step


def _sh(cwd: Path, *args: str) -> str:
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t.invalid", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t.invalid",
    )  # fmt: skip
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _trials(url: str, name: str) -> list[tuple]:
    study = optuna.load_study(study_name=name, storage=url)
    return [(t.number, t.state.name, t.params, t.value, dict(t.intermediate_values)) for t in study.trials]


@pytest.mark.slow  # 3 trials twice and a finalist through real DVC experiments (~6 min on 2 cores)
def test_a_tiny_study_records_each_trial_as_an_experiment_prunes_and_repeats(tmp_path: Path) -> None:
    work = prepare_copy(ROOT, tmp_path / "work", TINY, raw={"tiny": _tiny_rationales(tmp_path / "raw" / "tiny")}, share_cache=False)
    (work / ".gitignore").write_text("/data/*\n!/data/raw/\n/models/*\n!/models/pretrained/\n/.rerank-lab/\n")
    _sh(work, "git", "init", "-q", "-b", "main")
    _sh(work, sys.executable, "-m", "dvc", "config", "core.no_scm", "false")
    _sh(work, sys.executable, "-m", "dvc", "repro", "train")
    one_epoch = json.loads((work / "metrics" / "train" / "tiny.json").read_text())["steps"]
    # epochs 1 or 2; the threshold pruner (nDCG never reaches 2) may act only after the first
    # epoch: a 1-epoch trial completes, a 2-epoch trial is pruned one step into its second epoch
    params = yaml.safe_load((work / "params.yaml").read_text())
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    params["hpo"] |= {
        "n_trials": 3, "seed": 3, "sampler": "random", "pruner": "threshold", "prune_below": 2.0,
        "warmup_steps": one_epoch + 1, "finalists": 1, "storage": url,
        "space": {"train.learning_rate": {"low": 1e-5, "high": 1e-4, "log": True}, "train.epochs": [1, 2]},
    }  # fmt: skip
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _sh(work, "git", "add", "-A")
    _sh(work, "git", "commit", "-q", "-m", "tiny pipeline")

    log = _sh(work, sys.executable, "-m", "rerank_lab.cli", "hpo", "run")
    name = log.split()[1]
    trials = _trials(url, name)
    assert [t[0] for t in trials] == [0, 1, 2]
    states = {t[2]["train.epochs"]: t[1] for t in trials}
    assert states == {1: "COMPLETE", 2: "PRUNED"}, trials  # seed 3 draws both
    for number, state, values, value, curve in trials:
        exp = f"{name}-t{number:03d}"
        assert f"  {exp}: {state.lower()}" in log
        rev = _sh(work, "git", "for-each-ref", "--format=%(objectname)", f"refs/exps/*/*/{exp}").strip()
        tracked = yaml.safe_load(_sh(work, "git", "show", f"{rev}:params.yaml"))["train"]
        assert (tracked["learning_rate"], tracked["epochs"], tracked["trial"]) == (
            values["train.learning_rate"],
            values["train.epochs"],
            f"{name}/{number}",
        )
        metrics = json.loads(_sh(work, "git", "show", f"{rev}:metrics/train/tiny.json"))
        last = values["train.epochs"] * one_epoch
        if state == "PRUNED":  # stopped before its last step, at the first step the pruner may act
            assert metrics["trial_pruned"] == 1 and metrics["trial_steps"] == one_epoch + 1 < last
            assert max(curve) == one_epoch + 1
        else:
            assert metrics["trial_pruned"] == 0 and metrics["trial_steps"] == last and value == metrics["dev_mined_ndcg@10"]
            assert sorted(curve) == list(range(1, last + 1))
    # tier B runs train and nothing after it; what train needs comes from the workspace's run
    assert "executed: check, train; reused:" in log and "executed: check, train, score" not in log
    # tier C: the best complete trial through the whole pipeline, evaluated once
    best = max((t for t in trials if t[1] == "COMPLETE"), key=lambda t: t[3])
    full = f"{name}-t{best[0]:03d}-full"
    assert f"finalist {best[0]}" in log and f"{full} done" in log
    rev = _sh(work, "git", "for-each-ref", "--format=%(objectname)", f"refs/exps/*/*/{full}").strip()
    headline = json.loads(_sh(work, "git", "show", f"{rev}:metrics/headline/tiny.json"))
    assert (
        f"  tiny: dev_confirm_ndcg@10 {headline['dev_confirm_ndcg@10']:.4f}, test_ndcg@10_tuned {headline['test_ndcg@10_tuned']:.4f}" in log
    )

    # the same params and seed again, in a fresh storage: the same trials (run-cache restores, dev curves read back)
    (tmp_path / "optuna.db").unlink()
    _sh(work, sys.executable, "-m", "dvc", "exp", "remove", "--all-commits")
    again = _sh(work, sys.executable, "-m", "rerank_lab.cli", "hpo", "run", "--no-finalists")
    assert _trials(url, name) == trials
    assert "executed: nothing" in again
