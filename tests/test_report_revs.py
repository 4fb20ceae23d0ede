"""Reading evaluate's outputs at a revision: a revision whose cache object is gone is noted, not fatal."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from rerank_lab.report.revs import RevisionFiles
from tests.dvc_toy import GIT_ENV, commit_toy_pipeline

STAGE = """
import os
os.makedirs("data/evaluate/toy", exist_ok=True)
open("data/evaluate/toy/per_query.tsv", "w").write("run\\tsplit\\tquery_id\\tndcg@10\\nbm25\\ttest\\tq1\\t0.5\\n")
"""


def test_a_revision_whose_directory_object_is_missing_is_noted_not_fatal(tmp_path: Path, monkeypatch):
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)
    stage = {"cmd": f"{shlex.quote(sys.executable)} -c {shlex.quote(f'exec({STAGE!r})')}", "outs": ["data/evaluate/toy"]}
    commit_toy_pipeline(tmp_path, stage, "toy")
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()

    # a teammate's commit whose outputs were never pulled: the directory's cache object is absent
    # (read nothing before: fsspec reuses a DVCFileSystem built with the same arguments)
    shutil.rmtree(tmp_path / ".dvc" / "cache")
    files = RevisionFiles(tmp_path)
    assert files.per_query(sha, "toy") is None
    assert files.unreadable == [(sha, "data/evaluate/toy/per_query.tsv")]
