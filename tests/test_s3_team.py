"""The team setup against a real S3 API (moto's server on loopback, started and stopped by each test):
push and pull of outputs and the run cache, a teammate's clone that reproduces nothing, and an
experiment moved between two clones with ``dvc exp push`` / ``dvc exp pull``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.dvc_toy import DVC, run
from tests.s3_server import bucket_objects
from tests.s3_team import OUTS, REMOTE, digests, make_team, toy_runs


def test_round_trip_outputs_and_run_cache_byte_identical(s3, tmp_path: Path):
    team = make_team(tmp_path, s3)
    alice = team.alice
    # credentials stay out of git: config.local is ignored, no tracked file holds the secret
    assert run(["git", "ls-files", ".dvc"], alice).stdout.split() == [".dvc/.gitignore", ".dvc/config"]
    assert run(["git", "grep", "-F", "-c", s3.secret_access_key], alice, check=False).returncode == 1
    before = digests(alice)
    assert len(before) == 4  # best.json, topk.tsv, trials.tsv, reliability.tsv

    assert "7 files pushed" in run([*DVC, "push", "--run-cache"], alice).stdout
    pushed = bucket_objects(s3)
    # 4 files + one .dir listing per folder (2), and one run-cache entry; the cache: false metrics are not objects
    assert sum(k.startswith("cache/files/md5/") for k in pushed) == 6
    assert sum(k.endswith(".dir") for k in pushed) == 2
    assert sum(k.startswith("cache/runs/") for k in pushed) == 1
    assert len(pushed) == 7

    shutil.rmtree(alice / ".dvc" / "cache")
    for out in OUTS:
        shutil.rmtree(alice / out)
    pulled = run([*DVC, "pull", "--run-cache"], alice).stdout
    assert "6 files fetched" in pulled  # DVC counts the run-cache entry when it pushes, not when it pulls
    assert digests(alice) == before
    assert len(list((alice / ".dvc" / "cache" / "runs").rglob("*"))) == 3  # runs/<2>/<stage key>/<entry>
    assert "Data and pipelines are up to date." in run([*DVC, "status"], alice).stdout
    assert "Everything is up to date." in run([*DVC, "push"], alice).stdout
    run([*DVC, "push", "--run-cache"], alice)  # DVC uploads run-cache entries again (same key, same bytes)
    assert bucket_objects(s3) == pushed


def test_teammate_clone_pulls_and_reproduces_nothing(s3, tmp_path: Path):
    team = make_team(tmp_path, s3)
    run([*DVC, "push", "--run-cache"], team.alice)
    assert toy_runs(tmp_path) == ["bce"]  # alice's one run

    bob = team.clone("bob")
    env = s3.env()  # bob's credentials: the environment, not a file
    assert not (bob / ".dvc" / "config.local").exists()
    run([*DVC, "pull", "--run-cache"], bob, env)
    assert digests(bob) == digests(team.alice)
    out = run([*DVC, "repro"], bob, env).stdout
    assert "Stage 'toy' didn't change, skipping" in out and "Running stage" not in out
    assert toy_runs(tmp_path) == ["bce"]  # 0 stages executed in bob's clone
    assert run(["git", "status", "--porcelain"], bob).stdout == ""

    # without credentials the pull fails: nothing is public
    shutil.rmtree(bob / ".dvc" / "cache")
    assert run([*DVC, "pull"], bob, check=False).returncode != 0


def test_experiment_moves_between_clones(s3, tmp_path: Path):
    team = make_team(tmp_path, s3)
    alice = team.alice
    run([*DVC, "push", "--run-cache"], alice)
    bob = team.clone("bob")
    env = s3.env()

    run([*DVC, "exp", "run", "-q", "-n", "exp-listnet", "-S", "train.loss=listnet"], alice)
    exp_outputs = digests(alice)  # exp run leaves the experiment's results in the workspace
    before = set(bucket_objects(s3))
    run([*DVC, "exp", "push", "--run-cache", "origin", "exp-listnet"], alice)
    new = set(bucket_objects(s3)) - before
    # what differs from main: best.json and the listing of its folder, and the experiment's run-cache entry
    assert len(new) == 3 and sum(k.endswith(".dir") for k in new) == 1 and sum(k.startswith("cache/runs/") for k in new) == 1

    assert run([*DVC, "exp", "show", "--json"], bob, env).stdout.count("exp-listnet") == 0
    run([*DVC, "exp", "pull", "origin", "exp-listnet"], bob, env)
    show = json.loads(run([*DVC, "exp", "show", "--json"], bob, env).stdout)
    exps = {e["name"]: e["revs"][0]["data"] for rev in show for e in (rev.get("experiments") or [])}
    assert list(exps) == ["exp-listnet"]
    metrics = exps["exp-listnet"]["metrics"]
    assert metrics["metrics/evaluate/toy.json"]["data"]["bm25+ce+tuned"]["validation"]["ndcg@10"] == 0.60
    assert metrics["metrics/tune/toy.json"]["data"]["best_confirm_ndcg@10"] == 0.52
    assert exps["exp-listnet"]["params"]["params.yaml"]["data"]["train"]["loss"] == "listnet"
    # its outputs came along: applied offline from bob's cache, byte-identical to alice's
    run([*DVC, "exp", "apply", "exp-listnet"], bob, {"AWS_ACCESS_KEY_ID": "none", "AWS_SECRET_ACCESS_KEY": "none"})
    assert digests(bob) == exp_outputs
    assert toy_runs(tmp_path) == ["bce", "listnet"]  # nothing ran in bob's clone

    # Not shared: a stage with `cache: false` outputs is never restored from a *pushed* run cache (DVC
    # does not upload those outputs with it), so bob rerunning alice's settings executes the stage again.
    run(["git", "checkout", "--", "."], bob)  # back to main's params and lock
    run([*DVC, "pull", "--run-cache", "-r", REMOTE], bob, env)
    assert sum(f.is_file() for f in (bob / ".dvc" / "cache" / "runs").rglob("*")) == 2  # alice's bce and listnet runs
    run([*DVC, "exp", "run", "-q", "-S", "train.loss=listnet"], bob, env)
    assert toy_runs(tmp_path) == ["bce", "listnet", "listnet"]
