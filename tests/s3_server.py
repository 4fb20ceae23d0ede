"""A real S3 API on loopback for the remote tests: moto's own server (``moto_server``), started per test.

moto lives in its own virtual environment (``.venv-moto``, made by ``make moto``): it needs a botocore
newer than the one dvc-s3's aiobotocore accepts, so it cannot share the project's ``.venv``. The server
enforces IAM authentication once it is set up: requests must be signed with the access key of the IAM
user made here, so wrong credentials are refused exactly as AWS refuses them.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
POLICY = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    access_key_id: str
    secret_access_key: str

    def env(self) -> dict[str, str]:
        """The credentials as the AWS variables every S3 client reads."""
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}


def moto_server_path() -> Path:
    """``$MOTO_SERVER``, else ``.venv-moto/bin/moto_server`` of this checkout."""
    path = Path(os.environ.get("MOTO_SERVER") or ROOT / ".venv-moto" / "bin" / "moto_server")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: moto_server not found (fix: run `make moto` in {ROOT}, or set MOTO_SERVER)")
    return path


@functools.cache
def _empty_file() -> str:
    fd, path = tempfile.mkstemp(prefix="rerank-lab-aws-")
    os.close(fd)
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any AWS setting (a developer's real profile must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"  # no instance-metadata probing for credentials
    env["AWS_CONFIG_FILE"] = env["AWS_SHARED_CREDENTIALS_FILE"] = _empty_file()  # botocore refuses /dev/null
    return {**env, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> bool:
    """True once ``proc`` answers on ``url``; False if it exits first (its port was taken meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1).read()
            return proc.poll() is None  # the answer was ours, not another server's on a reused port
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not answer on {url} within {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _client(service: str, endpoint: str, key: str = "setup", secret: str = "setup"):
    import botocore.session

    session = botocore.session.get_session()
    return session.create_client(service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id=key, aws_secret_access_key=secret)


def _set_up(endpoint: str, bucket: str) -> tuple[str, str]:
    """The IAM user allowed s3:* and its access key, the bucket; then authentication is switched on."""
    iam = _client("iam", endpoint)
    iam.create_user(UserName="rerank-lab-ci")
    iam.put_user_policy(UserName="rerank-lab-ci", PolicyName="s3", PolicyDocument=POLICY)
    key = iam.create_access_key(UserName="rerank-lab-ci")["AccessKey"]
    _client("s3", endpoint).create_bucket(Bucket=bucket)
    # from now on every request must be signed by a known key whose policy allows it
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(request, timeout=5).read()
    return key["AccessKeyId"], key["SecretAccessKey"]


@contextmanager
def moto_s3(log_dir: Path, bucket: str = "rerank-lab-team") -> Iterator[S3Server]:
    """Start ``moto_server`` on a free loopback port, set it up, yield it; stop it at the end."""
    exe = moto_server_path()
    log = log_dir / "moto_server.log"
    for _ in range(3):  # a free port can be taken between choosing it and binding it
        endpoint = f"http://127.0.0.1:{free_port()}"
        with open(log, "wb") as out:
            cmd = [str(exe), "-H", "127.0.0.1", "-p", endpoint.rsplit(":", 1)[1]]
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=clean_env())
        try:
            if _wait_until_up(endpoint, proc):
                break
        except BaseException:
            _stop(proc)
            raise
    else:
        raise RuntimeError(f"moto_server exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
    try:
        key, secret = _set_up(endpoint, bucket)
        yield S3Server(endpoint, bucket, key, secret)
    finally:
        _stop(proc)


def isolate_aws(monkeypatch) -> None:
    """Run this test (and its subprocesses) with no AWS setting of the developer's, and no DVC analytics."""
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in clean_env().items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")


def bucket_objects(server: S3Server, prefix: str = "") -> dict[str, int]:
    """Every key of the bucket under ``prefix``, with its size in bytes (read with the IAM user's key)."""
    s3 = _client("s3", server.endpoint, server.access_key_id, server.secret_access_key)
    found: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=server.bucket, Prefix=prefix):
        found.update({obj["Key"]: obj["Size"] for obj in page.get("Contents", [])})
    return found
