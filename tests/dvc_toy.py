"""A toy DVC project for the report tests: git identity, a checked command runner, and the
commit of a one-stage pipeline (git init, dvc init, dvc repro, commit)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

GIT_ENV = {
    "GIT_AUTHOR_NAME": "rerank-lab tests",
    "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_NAME": "rerank-lab tests",
    "GIT_COMMITTER_EMAIL": "tests@example.invalid",
}
DVC = [sys.executable, "-m", "dvc"]


def run(args: list, cwd: Path) -> None:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **GIT_ENV})
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"


def commit_toy_pipeline(repo: Path, stage: dict, message: str) -> None:
    """Write ``dvc.yaml`` with the one stage ``toy``, reproduce it and commit everything on ``main``."""
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"toy": stage}}), encoding="utf-8")
    run(["git", "init", "-q", "-b", "main"], repo)
    run([*DVC, "init", "-q"], repo)
    run([*DVC, "repro", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", message], repo)
