"""Reproduction checks in the spirit of pyserini's 2CR pages.

A table (``repro/*.yaml``) lists expected scores, each with the command a user runs in their
checkout to produce it. :func:`check_table` re-runs the real pipeline (``dvc repro``) for each
distinct params setting in a scratch copy of the project -- the checkout itself is never touched
-- and prints OK / FAIL per row. The copy shares the checkout's DVC cache, so stages whose
inputs have not changed are restored from DVC's run cache instead of recomputed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from rerank_lab.errors import ConfigError, InputError

COPIED = ("dvc.yaml", "params.yaml", "src", "models/pretrained")


@dataclasses.dataclass(frozen=True)
class Row:
    """One expected score."""

    id: str
    dataset: str
    run: str
    split: str
    metric: str
    expected: float
    tolerance: float
    command: str
    params: dict[str, Any]
    source: str = ""
    targets: tuple[str, ...] = ()  # stages the check runs (all when empty)


def load_table(path: Path) -> list[Row]:
    """Read and check a reproduction table."""
    if not path.is_file():
        raise InputError("reproduction table not found", path=path, fix="pass --table repro/beir.yaml")
    rows = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    out = []
    for i, raw in enumerate(rows, start=1):
        try:
            out.append(Row(**{"params": {}, **raw, "targets": tuple(raw.get("targets", ()))}))
        except TypeError as exc:
            raise InputError(f"bad row: {exc}", path=path, record=f"row {i}", fix="see the fields of rerank_lab.repro.Row") from None
    return out


def _set(params: dict, dotted: str, value: Any) -> None:
    node = params
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def prepare_copy(
    root: Path, workdir: Path, overrides: dict[str, Any], raw: dict[str, Path] | None = None, share_cache: bool = True
) -> Path:
    """A scratch copy of the project at ``workdir`` with params ``overrides`` applied.

    ``raw`` maps dataset names to raw folders to copy in (default: the checkout's data/raw);
    ``share_cache`` points the copy at the checkout's DVC cache (and so its run cache).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        src = root / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, workdir / name)
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    for key, value in overrides.items():
        _set(params, key, value)
    train = params.get("train") or {}
    if "train.dataset" not in overrides and train.get("dataset") not in params.get("datasets", []):
        train["dataset"] = params["datasets"][0]  # a copy on other datasets trains on its first one (check would refuse)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    raw_dir = workdir / "data" / "raw"
    raw_dir.mkdir(parents=True)
    for name in params["datasets"]:
        source = (raw or {}).get(name, root / "data" / "raw" / name)
        if not Path(source).exists():
            raise ConfigError(f"no raw data for dataset {name!r}", path=source, fix="put the dataset under data/raw/")
        shutil.copytree(source, raw_dir / name)
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=workdir, check=True)
    if share_cache and (root / ".dvc" / "cache").is_dir():
        subprocess.run([*dvc, "cache", "dir", str((root / ".dvc" / "cache").resolve())], cwd=workdir, check=True)
    return workdir


def run_pipeline(workdir: Path, echo: Callable[[str], None] = print, targets: tuple[str, ...] = (), args: tuple[str, ...] = ()) -> None:
    """``dvc repro [args] [targets]`` in ``workdir``, with this interpreter's scripts first on PATH."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", *args, *targets], cwd=workdir, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConfigError(
            f"dvc repro failed in {workdir}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}", fix="read the stage output above"
        )
    echo(f"dvc repro finished in {workdir}")


def check_table(
    table: Path, only: tuple[str, ...], workdir: Path | None, echo: Callable[[str], None] = print, root: Path | None = None
) -> bool:
    """Run each params group of ``table`` once and compare every row; True when all pass.

    ``root`` is the checkout the scratch copies are made from (the current directory when None).
    """
    rows = [r for r in load_table(table) if not only or r.id in only or r.dataset in only]
    if not rows:
        raise ConfigError("no rows selected", path=table, fix="check --only against the row ids")
    root = Path(root) if root is not None else Path.cwd()
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(json.dumps([row.params, row.targets], sort_keys=True), []).append(row)
    base = workdir or Path(tempfile.mkdtemp(prefix="rerank-lab-repro-"))
    all_ok = True
    for i, (key, group) in enumerate(groups.items()):
        params, targets = json.loads(key)
        echo(f"[{i + 1}/{len(groups)}] params {params} stages {targets or 'all'}")
        copy = prepare_copy(root, base / f"group{i}", params)
        run_pipeline(copy, echo, tuple(targets))
        for row in group:
            got = _metric(copy, row)
            ok = abs(got - row.expected) <= row.tolerance
            all_ok &= ok
            echo(f"{'OK  ' if ok else 'FAIL'} {row.id:<36} {row.metric} {got:.4f} expected {row.expected:.4f} ± {row.tolerance}")
    return all_ok


def _metric(copy: Path, row: Row) -> float:
    """The row's metric from the copy's evaluate output, or computed from its runs when the
    check ran only some stages (same library function as the evaluate stage)."""
    path = copy / "metrics" / "evaluate" / f"{row.dataset}.json"
    if path.is_file():
        return json.loads(path.read_text())[row.run][row.split][row.metric]
    from rerank_lab.evaluate import evaluate_runs
    from rerank_lab.io.datasets import load_dataset

    dd = load_dataset(copy / "data" / "convert" / row.dataset / "dataset")
    roots = [p for p in (copy / "data" / s / row.dataset for s in ("retrieve", "fuse", "score")) if p.is_dir()]
    summary, _ = evaluate_runs(
        roots, copy / "data" / "convert" / row.dataset / "qrels", {s: set(dd[s]["id"]) for s in dd}, (row.metric,), (row.split,)
    )
    return summary[row.run][row.split][row.metric]
