"""The pull-request report script (`rerank-lab pr-report`), run for real: a CI clone of a
pull-request branch against the team's S3 remote (moto's server on loopback), two commits and an
experiment; then the same with the branch's outputs never pushed, and with wrong credentials."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.dvc_toy import DVC, GIT_ENV, run
from tests.s3_server import ROOT
from tests.s3_team import Team, make_team, toy_runs

PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = ("toy-ndcg-vs-topk.png", "toy-reliability.png", "toy-optuna-history.png")


def _pull_request(tmp_path: Path, s3, push_outputs: bool = True) -> Team:
    """main (toy pipeline with bce, the team remote) pushed; a branch ``feature`` that switches to listnet
    (its outputs pushed or not), and an experiment on it (ranknet) pushed with `dvc exp push`."""
    team = make_team(tmp_path, s3)
    alice = team.alice
    run([*DVC, "push", "--run-cache"], alice)
    run(["git", "checkout", "-q", "-b", "feature"], alice)
    params = yaml.safe_load((alice / "params.yaml").read_text())
    params["train"]["loss"] = "listnet"
    (alice / "params.yaml").write_text(yaml.safe_dump(params))
    run([*DVC, "repro", "-q"], alice)
    run(["git", "add", "-A"], alice)
    run(["git", "commit", "-q", "-m", "listnet"], alice)
    run(["git", "push", "-q", "origin", "feature"], alice)
    if push_outputs:
        run([*DVC, "push", "--run-cache"], alice)
    run([*DVC, "exp", "run", "-q", "-n", "exp-ranknet", "-S", "train.loss=ranknet"], alice)
    run([*DVC, "exp", "push", "--run-cache", "origin", "exp-ranknet"], alice)
    assert toy_runs(tmp_path) == ["bce", "listnet", "ranknet"]
    return team


def _pr_report(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rerank_lab.cli", "pr-report", "--base", "main", "--output", "report"]
    return subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env={**os.environ, **GIT_ENV, **env})


def _check_report(ci: Path) -> str:
    md = (ci / "report" / "report.md").read_text(encoding="utf-8")
    assert "## Metrics changed against `origin/main`" in md
    assert "| metrics/evaluate/toy.json | bm25+ce+tuned.validation.ndcg@10 | 0.5000 | 0.6000 |" in md
    assert "| metrics/tune/toy.json | best_confirm_ndcg@10 | 0.4800 | 0.5200 |" in md
    assert "| params.yaml | train.loss | bce | listnet |" in md
    assert "| exp-ranknet | experiment |" in md  # pulled from the team's git remote with its metrics
    for name in PLOTS:
        assert (ci / "report" / name).read_bytes()[:8] == PNG
        assert f"![{name}]({name})" in md
    with open(ci / "report" / "leaderboard.csv", newline="", encoding="utf-8") as fh:
        board = {row["loss"]: row for row in csv.DictReader(fh)}
    assert float(board["ranknet"]["dev_confirm_ndcg@10"]) == 0.57 and board["ranknet"]["experiment"] == "exp-ranknet"
    assert float(board["listnet"]["dev_confirm_ndcg@10"]) == 0.52
    return md


def test_pr_report_end_to_end(s3, tmp_path: Path):
    team = _pull_request(tmp_path, s3)
    ci = team.clone("ci", branch="feature")  # what actions/checkout leaves: the branch, no local main

    proc = _pr_report(ci, s3.env())
    assert proc.returncode == 0, proc.stderr
    log = proc.stderr
    assert f"pr-report: remote: DVC remote 'storage' (s3://{s3.bucket}/cache, endpoint {s3.endpoint}): bucket" in log
    assert "pr-report: dvc repro: 0 ran, 0 restored, 1 unchanged (toy)" in log  # every output came from the remote
    assert toy_runs(tmp_path) == ["bce", "listnet", "ranknet"]  # nothing recomputed in CI
    _check_report(ci)


def test_pr_report_missing_object_is_named_or_recomputed_by_decision(s3, tmp_path: Path):
    team = _pull_request(tmp_path, s3, push_outputs=False)  # the author forgot `dvc push`
    ci = team.clone("ci", branch="feature")
    lock = yaml.safe_load((ci / "dvc.lock").read_text())
    tune_md5 = next(o["md5"] for o in lock["stages"]["toy"]["outs"] if o["path"] == "data/tune/toy")
    where = f"DVC remote 'storage' (s3://{s3.bucket}/cache, endpoint {s3.endpoint})"

    # wrong credentials: stopped before any pull, one line naming the remote and the fix
    proc = _pr_report(ci, {**s3.env(), "AWS_SECRET_ACCESS_KEY": "wrong"})
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].startswith(f"error: {where}: the S3 server refused the credentials from the AWS environment")
    assert "pr-report: pull outputs" not in proc.stderr

    # the missing object is an error that names it (data/evaluate/toy did not change: it is on the remote)
    proc = _pr_report(ci, s3.env())
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"error: {where}: 1 object(s) missing: data/tune/toy (md5 {tune_md5}) (fix: run `dvc push` where they were made, "
        "or pass --recompute-missing (RERANK_LAB_RECOMPUTE_MISSING=1) to recompute their stages)"
    )
    assert not (ci / "report").exists()

    # an explicit decision to recompute: logged by name, then dvc repro runs the stage
    proc = _pr_report(ci, {**s3.env(), "RERANK_LAB_RECOMPUTE_MISSING": "1"})
    assert proc.returncode == 0, proc.stderr
    assert (
        f"pr-report: decision: recompute 1 object(s) missing on {where}: data/tune/toy (md5 {tune_md5}) "
        "(RERANK_LAB_RECOMPUTE_MISSING / --recompute-missing)"
    ) in proc.stderr
    assert "pr-report: dvc repro: 1 ran (toy), 0 restored, 0 unchanged" in proc.stderr
    assert toy_runs(tmp_path) == ["bce", "listnet", "ranknet", "listnet"]
    _check_report(ci)


def test_the_workflow_runs_the_script_and_swallows_no_error():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "report.yml").read_text(encoding="utf-8"))
    commands = [step.get("run", "") for step in workflow["jobs"]["report"]["steps"]]
    assert [c for c in commands if "pr-report" in c] == [
        '.venv/bin/rerank-lab pr-report --base "${{ github.base_ref }}" --git-remote origin --output report'
    ]
    # every DVC step and the report itself are in the script; nothing swallows an error
    others = [c for c in commands if "pr-report" not in c]
    assert not [c for c in others if "|| true" in c or re.search(r"(^|[\s/])(dvc|rerank-lab) ", c)]
