"""dvc.yaml's deps cover exactly the package modules each stage's command executes.

A stage whose code changes must rerun, and only then: ``dvc status`` can only know that if every
``src/rerank_lab`` file the command imports (directly or through other modules) is a dep. The
imports are read from the source (rerank_lab.deps), so the next module added to a stage's import
graph cannot be forgotten.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rerank_lab.deps import ROOT as PACKAGE
from rerank_lab.deps import command_closure, module_closure

REPO = Path(__file__).resolve().parents[1]
CLI = PACKAGE / "cli.py"
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _command(cmd: str) -> str:
    """The click function a stage runs: ``rerank-lab teacher-score ...`` -> ``teacher_score``."""
    m = re.search(r"rerank-lab\s+([a-z][a-z-]*)", cmd)
    assert m, f"stage command {cmd!r} does not run rerank-lab"
    return m.group(1).replace("-", "_")


def _covered(deps: list[str]) -> set[str]:
    """Package files (relative to src/rerank_lab) that a stage's deps cover; a folder covers its .py files."""
    out: set[str] = set()
    for dep in deps:
        if not dep.startswith("src/rerank_lab"):
            continue
        path = REPO / dep
        assert path.exists(), f"dep {dep} does not exist"
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        out |= {f.relative_to(PACKAGE).as_posix() for f in files}
    return out


def _executed(stage: dict) -> set[str]:
    return {p.relative_to(PACKAGE).as_posix() for p in command_closure(CLI, _command(stage["cmd"]))}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_each_stage_depends_on_exactly_the_modules_its_command_imports(name: str) -> None:
    stage = STAGES[name]
    executed, covered = _executed(stage), _covered(stage["deps"])
    missing, extra = sorted(executed - covered), sorted(covered - executed)
    assert not missing and not extra, (
        f"stage {name}: add to its deps {['src/rerank_lab/' + m for m in missing]}, remove {['src/rerank_lab/' + e for e in extra]}"
    )


def test_the_import_graph_is_read_through_functions_and_packages() -> None:
    """The closure follows function-level imports and package __init__ files (a fixed point of
    the graph, checked on modules whose imports are known)."""
    tune = {p.relative_to(PACKAGE).as_posix() for p in module_closure("rerank_lab.tune")}
    assert {"tune.py", "evaluate.py", "calibration.py", "io/__init__.py", "io/trec.py", "__init__.py"} <= tune
    assert "scoring.py" not in tune  # tune never runs a model
    assert _executed({"cmd": "rerank-lab dedup"}) >= {"dedup.py", "drops.py", "io/datasets.py", "schema.py", "cli.py"}
    assert "tune.py" not in _executed({"cmd": "rerank-lab dedup"})  # only the command's own imports count


def _placeholders(work: Path) -> None:
    """Every dep and out of the copy's stages as a tiny file or folder, so `dvc commit` can record
    a state in which nothing needs to run (the test is about which stages a code change reruns)."""
    from dvc.repo import Repo

    with Repo(str(work)) as repo:
        paths = [(Path(o.fs_path), True) for s in repo.index.stages for o in s.outs]
        paths += [(Path(d.fs_path), False) for s in repo.index.stages for d in s.deps]
    for path, _ in paths:
        if path.exists():
            continue
        if path.suffix in {".json", ".tsv", ".trec", ".npy", ".sqlite"}:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("placeholder\n")
        else:
            path.mkdir(parents=True, exist_ok=True)
            (path / "placeholder").write_text("placeholder\n")


def _status(work: Path) -> set[str]:
    out = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=work, capture_output=True, text=True, check=True).stdout
    return set(json.loads(out or "{}"))


def test_changing_a_module_reruns_exactly_the_stages_that_import_it(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(REPO / name, work / name)
    shutil.copytree(REPO / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=work, check=True)
    _placeholders(work)
    subprocess.run([sys.executable, "-m", "dvc", "commit", "--force", "-q"], cwd=work, check=True, capture_output=True)
    assert _status(work) == set()

    from dvc.repo import Repo

    with Repo(str(work)) as repo:
        commands = {s.name: _command(s.cmd) for s in repo.index.stages}
    for module in ("stats.py", "scoring.py", "io/scores.py"):
        path = work / "src" / "rerank_lab" / module
        original = path.read_bytes()
        path.write_bytes(original + b"\n# changed\n")
        expected = {stage for stage, fn in commands.items() if PACKAGE / module in command_closure(CLI, fn)}
        assert expected, module  # each probe module is executed by some stage
        assert _status(work) == expected, module
        path.write_bytes(original)
    assert _status(work) == set()


def test_tool_commands_live_outside_every_stage_s_deps() -> None:
    """report, repro, grid, hpo ... are no stages: their code must not sit in a file every stage
    depends on (cli.py), or adding a tool reruns the whole pipeline. They are still commands."""
    import inspect

    import click

    from rerank_lab.cli import cli

    ctx = click.Context(cli)
    stages = {_command(s["cmd"]).replace("_", "-") for s in STAGES.values()}
    tools = set(cli.list_commands(ctx)) - stages
    assert {"report", "repro", "grid", "hpo"} <= tools
    covered = set().union(*(_covered(s["deps"]) for s in STAGES.values()))
    for name in sorted(tools):
        command = cli.get_command(ctx, name)
        assert command is not None, name
        callbacks = [command.callback] + [c.callback for c in getattr(command, "commands", {}).values()]
        for callback in callbacks:
            source = Path(inspect.getsourcefile(callback)).resolve().relative_to(PACKAGE).as_posix()
            assert source not in covered, f"tool command {name} is defined in {source}, a stage dep"
