"""A team around one S3 remote: a bare git repository (``origin``) and the first member's clone, which
made the toy pipeline (tests/dvc_toy.py) and configured the remote exactly as the README's "Team setup"
says: URL and endpoint committed in ``.dvc/config``, credentials in the never-committed
``.dvc/config.local``. Everyone else gets the credentials from the environment."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.dvc_toy import DVC, commit_toy_pipeline, report_stage, run
from tests.s3_server import S3Server, isolate_aws, moto_s3

REMOTE = "storage"
OUTS = ("data/tune/toy", "data/evaluate/toy")  # the toy stage's cached outputs (its two metrics are cache: false)


@dataclass(frozen=True)
class Team:
    s3: S3Server
    origin: Path
    alice: Path

    @property
    def url(self) -> str:
        return f"s3://{self.s3.bucket}/cache"

    def clone(self, name: str, branch: str = "main") -> Path:
        """A teammate's fresh clone; its DVC credentials come from the environment (``self.s3.env()``)."""
        path = self.origin.parent / name
        run(["git", "clone", "-q", "-b", branch, self.origin, path], self.origin.parent)
        return path


def make_team(tmp: Path, s3: S3Server, loss: str = "bce") -> Team:
    """``origin`` and ``alice``: the toy pipeline reproduced with ``train.loss=loss``, the remote
    committed, both commits pushed to ``origin`` (its DVC outputs are not pushed yet)."""
    origin, alice = tmp / "origin.git", tmp / "alice"
    run(["git", "init", "-q", "--bare", "-b", "main", origin], tmp)
    alice.mkdir()
    params = {"datasets": ["toy"], "train": {"loss": loss, "regime": "listwise"}, "tune": {"run": "bm25"}, "score": {"name": "ce"}}
    (alice / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    commit_toy_pipeline(alice, report_stage(alice), "toy pipeline")
    # the README's team setup: the remote is committed before any experiment (or `dvc exp push` uploads nothing)
    run([*DVC, "remote", "add", "-d", REMOTE, f"s3://{s3.bucket}/cache"], alice)
    run([*DVC, "remote", "modify", REMOTE, "endpointurl", s3.endpoint], alice)
    run([*DVC, "remote", "modify", "--local", REMOTE, "access_key_id", s3.access_key_id], alice)
    run([*DVC, "remote", "modify", "--local", REMOTE, "secret_access_key", s3.secret_access_key], alice)
    run(["git", "add", ".dvc/config"], alice)
    run(["git", "commit", "-q", "-m", "team remote"], alice)
    run(["git", "remote", "add", "origin", origin], alice)
    run(["git", "push", "-q", "-u", "origin", "main"], alice)
    return Team(s3, origin, alice)


def digests(repo: Path, paths: tuple[str, ...] = OUTS) -> dict[str, str]:
    """sha256 of every file under ``paths`` (relative names): what "byte-identical" compares."""
    out = {}
    for top in paths:
        for f in sorted((repo / top).rglob("*")):
            if f.is_file():
                out[str(f.relative_to(repo))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture
def s3(tmp_path: Path, monkeypatch):
    """A moto S3 server on loopback for one test (AWS settings of the machine isolated); the toy
    stage logs each of its executions to ``runs.log`` (:func:`toy_runs`)."""
    isolate_aws(monkeypatch)
    monkeypatch.setenv("TOY_RUNLOG", str(tmp_path / "runs.log"))
    with moto_s3(tmp_path) as server:
        yield server


def toy_runs(tmp_path: Path) -> list[str]:
    """The toy stage's executions so far (its train.loss, one line each)."""
    log = tmp_path / "runs.log"
    return log.read_text().split() if log.exists() else []
