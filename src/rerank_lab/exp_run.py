"""One ``dvc exp run --temp`` from Python: its stages as executed / restored / unchanged, its seconds.

``--temp`` is the executor ``dvc queue start`` workers use (a temporary copy of the workspace, the
workspace itself untouched), so what an experiment run here reuses is what a queued one reuses.
DVC says per stage ``Running stage 'x'`` (executed), ``Stage 'x' is cached - skipping run``
(restored from the run-cache) or ``Stage 'x' didn't change, skipping`` (unchanged); the
experiment's commit is then ``refs/exps/...<name>`` (:func:`experiment_rev`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rerank_lab.errors import redact

STATE = (
    (re.compile(r"^Running stage '([^']+)'"), "executed"),
    (re.compile(r"^Stage '([^']+)' is cached - skipping run"), "restored"),
    (re.compile(r"^Stage '([^']+)' didn't change, skipping"), "unchanged"),
)


@dataclasses.dataclass
class ExpRun:
    """What one experiment run did: ``stages`` as ``(stage, state, seconds)``, the output, the exit status."""

    name: str
    returncode: int
    seconds: float
    stages: list[tuple[str, str, float]]
    output: list[str]

    def count(self, state: str) -> int:
        return sum(1 for _, s, _ in self.stages if s == state)

    def tail(self, n: int = 20) -> str:
        return "\n".join(self.output[-n:])


def dvc_command() -> str:
    """This environment's ``dvc`` (next to the interpreter: a venv not on PATH still works)."""
    here = Path(sys.executable).with_name("dvc")
    return str(here) if here.is_file() else "dvc"


def stream(
    args: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None, on_line: Callable[[str], None] | None = None
) -> tuple[int, list[str]]:
    """Run ``args``, stdout and stderr merged, each line redacted (a remote's or storage's password
    never passes) and handed to ``on_line`` as it comes; returns the exit status and the lines."""
    proc = subprocess.Popen(
        list(args), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1
    )
    output: list[str] = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = redact(raw.rstrip("\n"))
        output.append(line)
        if on_line is not None:
            on_line(line)
    return proc.wait(), output


def run_experiment(
    name: str,
    sets: Sequence[str],
    targets: Sequence[str] = (),
    cwd: Path | None = None,
    on_line: Callable[[str], None] | None = None,
) -> ExpRun:
    """``dvc exp run --temp -n name -S <set> ... [targets]``, streamed; the stage commands find
    ``rerank-lab`` next to this interpreter."""
    args = [dvc_command(), "exp", "run", "--temp", "-n", name, *(a for s in sets for a in ("-S", s)), *targets]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    start = time.monotonic()
    stages: list[list] = []

    def seen(line: str) -> None:
        if on_line is not None:
            on_line(line)
        now = time.monotonic() - start
        for pattern, state in STATE:
            if m := pattern.match(line):
                if stages:
                    stages[-1][2] = now - stages[-1][2]
                stages.append([m.group(1), state, now])

    returncode, output = stream(args, cwd, env, seen)
    wall = time.monotonic() - start
    if stages:
        stages[-1][2] = wall - stages[-1][2]
    return ExpRun(name, returncode, wall, [(s, st, sec) for s, st, sec in stages], output)


def experiment_rev(name: str, cwd: Path | None = None) -> str | None:
    """The commit of experiment ``name`` of the current commit (``None`` when there is none)."""
    head = _git(["rev-parse", "HEAD"], cwd)
    refs = _git(["for-each-ref", "--format=%(refname) %(objectname)", f"refs/exps/{head[:2]}/{head[2:]}/"], cwd)
    for line in refs.splitlines():
        ref, _, sha = line.partition(" ")
        if ref.rsplit("/", 1)[-1] == name:
            return sha
    return None


def read_at(rev: str, path: str, cwd: Path | None = None) -> str | None:
    """A git-tracked file (a ``cache: false`` metric or plot) at ``rev``; ``None`` when absent."""
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=cwd, capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def _git(args: list[str], cwd: Path | None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
