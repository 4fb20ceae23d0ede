"""Bad remotes, against a real S3 API (moto's server, with IAM authentication on): wrong credentials,
an unreachable endpoint, a bucket that does not exist -- each one line naming the remote, its URL and
the fix, exit status 2 (`rerank-lab remote-check`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rerank_lab.errors import ConfigError
from rerank_lab.remote import check_remote
from tests.s3_server import free_port, isolate_aws, moto_s3


@pytest.fixture
def s3(tmp_path: Path, monkeypatch):
    isolate_aws(monkeypatch)
    with moto_s3(tmp_path) as server:
        yield server


def _repo(tmp: Path, url: str, endpoint: str, local: dict[str, str] | None = None) -> Path:
    """A DVC repository's config as `dvc remote add -d` / `dvc remote modify [--local]` write it."""
    repo = tmp / "repo"
    (repo / ".dvc").mkdir(parents=True)
    (repo / ".dvc" / "config").write_text(
        f"[core]\n    remote = storage\n['remote \"storage\"']\n    url = {url}\n    endpointurl = {endpoint}\n"
    )
    if local:
        lines = "".join(f"    {k} = {v}\n" for k, v in local.items())
        (repo / ".dvc" / "config.local").write_text(f"['remote \"storage\"']\n{lines}")
    return repo


def _cli(repo: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "rerank_lab.cli", "remote-check", "--repo", str(repo), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    return proc.returncode, proc.stdout, proc.stderr


def _one_line(code: int, err: str) -> str:
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_a_working_remote_answers(s3, tmp_path: Path):
    repo = _repo(tmp_path, f"s3://{s3.bucket}/cache", s3.endpoint)
    code, out, err = _cli(repo, env=s3.env())
    assert code == 0, err
    assert out.startswith(f"DVC remote 'storage' (s3://{s3.bucket}/cache, endpoint {s3.endpoint}): bucket '{s3.bucket}' answered")
    assert "credentials from the AWS environment" in out


def test_wrong_credentials(s3, tmp_path: Path):
    where = f"DVC remote 'storage' (s3://{s3.bucket}/cache, endpoint {s3.endpoint})"
    # a wrong secret in .dvc/config.local
    repo = _repo(tmp_path, f"s3://{s3.bucket}/cache", s3.endpoint, {"access_key_id": s3.access_key_id, "secret_access_key": "wrong"})
    err = _one_line(*_cli(repo)[::2])
    assert err.startswith(f"error: {where}: the S3 server refused the credentials from access_key_id / secret_access_key")
    assert "(SignatureDoesNotMatch)" in err
    assert err.rstrip().endswith("(fix: dvc remote modify --local storage access_key_id ID (and secret_access_key))")
    assert "wrong" not in err  # secrets never appear
    # an unknown key in the environment
    (repo / ".dvc" / "config.local").unlink()
    err = _one_line(*_cli(repo, env={"AWS_ACCESS_KEY_ID": "AKIANOTAUSER", "AWS_SECRET_ACCESS_KEY": "x"})[::2])
    assert "refused the credentials from the AWS environment" in err and "(InvalidAccessKeyId)" in err
    assert "fix: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in err
    # none at all
    with pytest.raises(ConfigError, match=re.escape(f"{where}: no S3 credentials found (fix: export AWS_ACCESS_KEY_ID")):
        check_remote(repo)


def test_unreachable_endpoint(s3, tmp_path: Path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    repo = _repo(tmp_path, f"s3://{s3.bucket}/cache", dead)
    err = _one_line(*_cli(repo, env=s3.env())[::2])
    assert err == (
        f"error: DVC remote 'storage' (s3://{s3.bucket}/cache, endpoint {dead}): cannot connect to {dead} "
        "(fix: start the S3 server, or correct the endpoint: dvc remote modify storage endpointurl URL)\n"
    )


def test_bucket_that_does_not_exist(s3, tmp_path: Path):
    repo = _repo(tmp_path, "s3://no-such-bucket/cache", s3.endpoint)
    err = _one_line(*_cli(repo, env=s3.env())[::2])
    assert err == (
        f"error: DVC remote 'storage' (s3://no-such-bucket/cache, endpoint {s3.endpoint}): bucket 'no-such-bucket' does not exist "
        "(fix: create it (aws s3 mb s3://no-such-bucket), or point the remote at an existing bucket: "
        "dvc remote modify storage url s3://BUCKET/PATH)\n"
    )


def test_remote_config_problems(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"not a DVC repository \(fix: run this from the root"):
        check_remote(tmp_path)
    repo = _repo(tmp_path, "s3://b/cache", "http://127.0.0.1:9")
    err = _one_line(*_cli(repo, "--remote", "stroage")[::2])
    assert err == f"error: {repo / '.dvc' / 'config'}: unknown DVC remote 'stroage' (fix: use one of: storage)\n"
    (repo / ".dvc" / "config").write_text("")
    with pytest.raises(ConfigError, match=r"no default DVC remote \(core.remote\) is set \(fix: add one: dvc remote add -d storage s3://"):
        check_remote(repo)
