"""A private PostgreSQL cluster on loopback for the tests: Debian's server binaries (`make postgres`
installs them), a fresh cluster in a temporary folder, one password-protected superuser, stopped and
deleted at the end. Nothing outside the folder is touched (no system cluster, no service)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

# `make test` sets this: there a missing server or driver is a failure, not a skip
REQUIRED = os.environ.get("RERANK_LAB_REQUIRE_POSTGRES") == "1"


def server_bin() -> Path | None:
    """The folder of the server binaries: ``initdb`` on PATH, else the newest ``/usr/lib/postgresql/*/bin``."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl", path=str(Path(on_path).resolve().parent)):
        return Path(on_path).resolve().parent
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    return max(found, key=lambda b: int(b.parent.name) if b.parent.name.isdigit() else 0) if found else None


def skip_or_fail(why: str) -> None:
    (pytest.fail if REQUIRED else pytest.skip)(f"{why} (fix: make postgres, and pip install -e '.[dev]' for the driver)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass(frozen=True)
class Cluster:
    port: int
    user: str
    password: str
    database: str = "postgres"

    def url(self, password: bool = True, database: str | None = None) -> str:
        auth = f"{self.user}:{quote(self.password, safe='')}" if password else self.user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database or self.database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(database=name)


@contextlib.contextmanager
def private_cluster(password: str, user: str = "rl") -> Iterator[Cluster]:
    """Start a cluster whose superuser ``user`` logs in over TCP on 127.0.0.1 with ``password``
    (scram-sha-256; the password file initdb reads is deleted before the server starts)."""
    bin_dir = server_bin()
    if bin_dir is None:
        skip_or_fail("no PostgreSQL server binaries (initdb) on PATH or in /usr/lib/postgresql/*/bin")
    # initdb and postgres refuse to run as root: then they run as the postgres (or nobody) account
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        name = next((n for n in ("postgres", "nobody") if _account(n)), None)
        if name is None or not shutil.which("runuser"):
            skip_or_fail("running as root without a postgres/nobody account and runuser to start the server as")
        as_user, owner = ["runuser", "-u", name, "--"], _account(name)
    # not under pytest's tmp_path: its folders are private to the user running the tests
    root = Path(tempfile.mkdtemp(prefix="rerank-lab-pg-"))
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *args], cwd=root, env=env, capture_output=True, text=True, timeout=120)

    data, log = root / "data", root / "server.log"
    started = False
    try:
        pwfile = root / "pw"
        pwfile.write_text(password + "\n")
        if owner is not None:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        init = run(str(bin_dir / "initdb"), "-D", str(data), "-U", user, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                   "--no-locale", "-E", "UTF8", "--no-sync")  # fmt: skip
        pwfile.unlink()
        assert init.returncode == 0, f"initdb failed:\n{init.stdout}\n{init.stderr}"
        for _ in range(3):  # a port taken between free_port() and the server's bind: try another
            port = free_port()
            opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
            start = run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(log), "-w", "-t", "60", "start")
            if start.returncode == 0:
                started = True
                break
        assert started, f"pg_ctl start failed:\n{start.stdout}\n{start.stderr}\n{log.read_text() if log.exists() else ''}"
        yield Cluster(port, user, password)
    finally:
        if started:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None
