"""One `dvc exp run --temp` from Python: stage states, the experiment's commit, files at it."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import yaml

from rerank_lab.exp_run import experiment_rev, read_at, run_experiment
from tests.dvc_toy import GIT_ENV, commit_toy_pipeline

STAGE = """
import json, yaml
p = yaml.safe_load(open("params.yaml"))
json.dump({"x2": p["x"] * 2}, open("out.json", "w"))
"""


def test_an_experiment_run_reports_its_stages_and_its_commit_holds_its_metrics(tmp_path: Path, monkeypatch):
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"x": 1}))
    stage = {
        "cmd": f"{shlex.quote(sys.executable)} -c {shlex.quote(f'exec({STAGE!r})')}",
        "params": ["x"],
        "metrics": [{"out.json": {"cache": False}}],
    }
    commit_toy_pipeline(tmp_path, stage, "toy")

    first = run_experiment("x3", ["x=3"], cwd=tmp_path)
    assert first.returncode == 0 and [(s, state) for s, state, _ in first.stages] == [("toy", "executed")]
    rev = experiment_rev("x3", cwd=tmp_path)
    assert rev and json.loads(read_at(rev, "out.json", cwd=tmp_path)) == {"x2": 6}
    assert json.loads((tmp_path / "out.json").read_text()) == {"x2": 2}  # --temp: the workspace is untouched

    again = run_experiment("x3-again", ["x=3"], cwd=tmp_path)  # the same params: the run-cache restores it
    assert [(s, state) for s, state, _ in again.stages] == [("toy", "restored")] and again.count("restored") == 1
    assert experiment_rev("absent", cwd=tmp_path) is None and read_at(rev, "nope.json", cwd=tmp_path) is None
    failed = run_experiment("bad", ["y.z=1"], cwd=tmp_path)
    assert failed.returncode != 0 and failed.tail()
