"""A tier-B worker killed mid-trial leaves a RUNNING trial behind: the next `hpo run` on the same
machine marks it failed and frees its place in the budget; other workers' trials are left alone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

from rerank_lab.hpo import counted
from rerank_lab.optuna_storage import WORKER_ATTR, fail_orphans


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_a_gone_worker_on_this_machine_loses_its_running_trial(tmp_path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="s", direction="maximize")
    host = socket.gethostname()
    workers = [
        f"{host}:{_dead_pid()}",  # killed here: orphan
        f"{host}:{os.getppid()}",  # alive here: still running
        "another-machine:1",  # elsewhere: cannot tell, left alone
        None,  # no worker recorded: left alone
    ]
    for worker in workers:
        trial = study.ask()
        if worker:
            trial.set_user_attr(WORKER_ATTR, worker)
    done = study.ask()
    study.tell(done, 0.5)
    assert counted(study) == 5

    assert fail_orphans(study) == [(0, int(workers[0].rsplit(":", 1)[1]))]

    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING, TrialState.RUNNING, TrialState.COMPLETE]
    assert counted(study) == 4  # the failed trial's place is free again
    assert fail_orphans(study) == []  # once


def _asked_points(storage: str, runs: int) -> list[dict]:
    """One trial per `hpo run` (each a new process: a new study object and sampler)."""
    import yaml

    from rerank_lab.hpo import ask_next, distributions, open_study
    from rerank_lab.hpo_space import parse_config

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["hpo"]["storage"] = storage
    cfg = parse_config(params)
    dists = distributions(params, cfg)
    for _ in range(runs):
        study = open_study(params, cfg)
        trial = ask_next(study, cfg, dists)
        study.tell(trial, 0.5)
    return [t.params for t in study.get_trials()]


def test_a_continued_study_asks_new_points_and_a_rerun_the_same_ones(tmp_path) -> None:
    first = _asked_points(f"sqlite:///{tmp_path / 'a.db'}", 4)
    assert len({tuple(sorted(p.items())) for p in first}) == 4  # the plain seed would repeat run 1's point
    assert _asked_points(f"sqlite:///{tmp_path / 'b.db'}", 4) == first
