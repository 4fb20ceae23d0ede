"""The factor grid of params.yaml, queued as DVC experiments: ``rerank-lab grid queue``.

params.yaml's ``grid`` section::

    grid:
      axes:                      # any key of params.yaml -> the values it takes
        train.loss: [listnet, bce]
        mine.miner: [random, hard, mixed]
      subsets:                   # optional: named smaller grids, picked with --subset NAME
        hard-only:
          mine.miner: [hard]     # replaces this axis's values; a key that is no axis adds one

**Cells** are the Cartesian product of the axes, in a stable order: axes as written (the first
varies slowest), each axis's values as written. A subset is the grid with the axes it names
given its values instead (usually a restriction; an axis keeps its place) and any other key it
names appended as a new axis. ``--where AXIS=VALUE`` keeps the cells whose AXIS has VALUE (read
as YAML; AXIS is the params key or its label); several values of one axis add up, conditions on
different axes must all hold.

**Names**: each cell's experiment is named after its values (:mod:`rerank_lab.grid_names`).

**Queueing**: before anything is queued, each cell's ``-S`` overrides are applied by DVC's own
code to a copy of params.yaml, read back as the stages read it (each value must come back as
written) and put through the ``check`` stage (every stage's config, the sections' consistency).
A cell whose name is an experiment of the current commit, queued or running stops the command
(``--skip-existing`` queues the others). Each cell is then one ``dvc exp run --queue -n <name>
-S <key>=<value> ...``; ``dvc queue start -j N`` runs them.
"""

from __future__ import annotations

import difflib
import itertools
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from rerank_lab.config import FieldError, did_you_mean, params_model, parse, section, show
from rerank_lab.errors import ConfigError, RerankLabError
from rerank_lab.grid_names import Axes, Cell, cell_names, labels
from rerank_lab.params_file import load_params


@params_model("grid")
class GridConfig:
    """``grid``: ``axes`` (a params key -> a list of values) and named ``subsets`` of the same shape."""

    axes: dict[str, Any]
    subsets: dict[str, Any] = Field(default_factory=dict)


# --- the grid section -----------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """YAML values equal as values: ``1 == 1.0``, but ``true`` is not ``1``.

    >>> same(1, 1.0), same(True, 1), same(["a", 2], ["a", 2.0]), same("1", 1)
    (True, False, True, False)
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _current(params: dict[str, Any], key: str, where: str) -> Any:
    """The value ``key`` has in params.yaml; an error naming ``where`` (with a near miss) when none."""
    parts = key.split(".")
    node: Any = params
    for i, part in enumerate(parts):
        siblings = [k for k in node if isinstance(k, str) and not (i == 0 and k == "grid")] if isinstance(node, dict) else []
        if part not in siblings:
            close = difflib.get_close_matches(part, siblings, n=1, cutoff=0.5)
            hint = f"did you mean {'.'.join([*parts[:i], close[0]])!r}? " if close else ""
            raise ConfigError("names no key of params.yaml", record=where, fix=f"{hint}an axis is a dotted params key, e.g. train.loss")
        node = node[part]
    if isinstance(node, dict):
        inner = next((k for k in node if isinstance(k, str)), "<key>")
        raise ConfigError("names a section, not a value", record=where, fix=f"name a key inside it, e.g. {key}.{inner}")
    return node


def _yaml(value: Any) -> str:
    """A value as written in params.yaml: ``[a, 0.5]``, ``null``, ``listnet``."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return show(value) if isinstance(value, bool | None) else str(value)


def _axes(params: dict[str, Any], mapping: dict[Any, Any], where: str) -> Axes:
    """``grid.axes`` (or one subset) checked: known keys, non-empty lists of plain values, no repeats."""
    out: Axes = {}
    for key, values in mapping.items():
        here = f"{where}.{key}"
        if not isinstance(key, str) or not key:
            raise ConfigError("must be a dotted params key", record=here, fix="write e.g. train.loss")
        current = _current(params, key, here)
        if not isinstance(values, list):
            raise FieldError((), "must be a list of values", values, fix=f"write a YAML list: [{_yaml(values)}]", where=here)
        if not values:
            fix = f"list its values, e.g. [{_yaml(current)}] (its value in params.yaml), or remove the axis"
            raise FieldError((), "is empty: an axis needs at least one value", fix=fix, where=here)
        for i, value in enumerate(values):
            items = value if isinstance(value, list) else [value]
            if any(isinstance(v, dict | list) for v in items):
                raise FieldError((i,), "must be a value or a list of values", value, fix="name an entry of its section instead", where=here)
            if any(same(value, earlier) for earlier in values[:i]):
                raise FieldError((i,), "repeats an earlier value", value, fix="list each value once", where=here)
        out[key] = tuple(values)
    for a, b in itertools.permutations(out, 2):
        if b.startswith(a + "."):
            raise ConfigError(f"lies inside axis {a}", record=f"{where}.{b}", fix="keep one of the two axes")
    return out


def grid_axes(params: dict[str, Any], subset: str | None = None) -> Axes:
    """The axes of params' ``grid`` section (or of its subset ``subset``), checked; every subset is
    checked too, picked or not."""
    if "grid" not in params:
        raise ConfigError("params has no grid section", fix="add grid.axes: a params key -> a list of values (README, 'The factor grid')")
    cfg = parse(GridConfig, params["grid"], "grid")
    axes = _axes(params, cfg.axes, "grid.axes")
    if not axes:
        raise FieldError((), "names no axis", {}, fix="add a params key and its values, e.g. train.loss: [listnet, bce]", where="grid.axes")
    subsets: dict[str, Axes] = {}
    for name, entry in cfg.subsets.items():
        if not isinstance(entry, dict) or not entry:
            fix = "write e.g. mine.miner: [hard]"
            raise FieldError((), "must map axes to lists of values", entry, fix=fix, where=f"grid.subsets.{name}")
        subsets[name] = _axes(params, entry, f"grid.subsets.{name}")
    if subset is None:
        return axes
    if subset not in subsets:
        known = f"use one of: {', '.join(subsets)}" if subsets else "add it under grid.subsets"
        raise ConfigError(f"params has no grid subset {subset!r}", record="--subset", fix=f"{did_you_mean(subset, list(subsets))}{known}")
    return {**axes, **subsets[subset]}  # a named axis keeps its place; a new key comes last


# --- cells, --where ------------------------------------------------------------------------


def select(axes: Axes, where: Sequence[str]) -> Axes:
    """``axes`` with only the values ``--where AXIS=VALUE`` keeps (all values of an axis it does not name).

    >>> select({"train.loss": ("listnet", "bce"), "tune.epsilon": (0.2, 1.0)}, ["epsilon=1"])
    {'train.loss': ('listnet', 'bce'), 'tune.epsilon': (1.0,)}
    """
    names = labels(list(axes))
    picked: dict[str, list[Any]] = {}
    for text in where:
        axis_text, eq, value_text = text.partition("=")
        axis_text = axis_text.strip()
        if not eq or not axis_text:
            raise ConfigError(f"--where {text!r}: not AXIS=VALUE", fix="write e.g. --where train.loss=listnet")
        by_label = [k for k, label in names.items() if label == axis_text]
        if axis_text not in axes and not by_label:
            choices = [*axes, *names.values()]
            raise ConfigError(
                f"--where {text!r}: {axis_text!r} is not an axis of the grid",
                fix=f"{did_you_mean(axis_text, choices)}axes: {', '.join(axes)}",
            )
        axis = axis_text if axis_text in axes else by_label[0]
        try:
            value = yaml.safe_load(value_text)
        except yaml.YAMLError:
            value = value_text
        match = [v for v in axes[axis] if same(v, value)]
        if not match:
            raise ConfigError(
                f"--where {text!r}: {_yaml(value)} is not a value of axis {axis}",
                fix=f"{did_you_mean(_yaml(value), [_yaml(v) for v in axes[axis]])}use one of: {', '.join(_yaml(v) for v in axes[axis])}",
            )
        picked.setdefault(axis, []).append(match[0])
    return {a: tuple(v for v in vals if any(same(v, p) for p in picked[a])) if a in picked else vals for a, vals in axes.items()}


def cells(axes: Axes) -> list[Cell]:
    """The Cartesian product, first axis slowest.

    >>> cells({"a": (1, 2), "b": ("x",)})
    [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'x'}]
    """
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


# --- DVC's -S overrides ----------------------------------------------------------------------


def _hydra_reads(text: str) -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides([f"k={text}"])[0].value()


def hydra_value(value: Any) -> str:
    """``value`` in the override grammar ``dvc exp run -S`` parses (Hydra's): quoted only when needed.

    >>> [hydra_value(v) for v in ("listnet", 0.2, None, True, ["nfcorpus"], "1", "a,b")]
    ['listnet', '0.2', 'null', 'true', '[nfcorpus]', "'1'", "'a,b'"]
    """
    if isinstance(value, bool | None):
        return show(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    text = str(value)
    try:
        if _hydra_reads(text) == text and isinstance(_hydra_reads(text), str):
            return text
    except Exception:  # noqa: BLE001 -- any parse failure means: quote it
        pass
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def overrides(cell: Cell, prefix: str = "") -> list[str]:
    """``-S`` arguments (``prefix``: ``<params file>:`` when it is not params.yaml)."""
    return [f"{prefix}{key}={hydra_value(value)}" for key, value in cell.items()]


def applied(params_path: Path, cell: Cell) -> dict[str, Any]:
    """The params a queued cell's stages will read: DVC's own ``-S`` applied to a copy of the params
    file (dvc.utils.hydra.apply_overrides, what ``dvc exp run -S`` calls), read back as the stages
    read params (:func:`rerank_lab.params_file.load_params`)."""
    from dvc.exceptions import DvcException
    from dvc.utils.hydra import apply_overrides

    with tempfile.TemporaryDirectory(prefix="rerank-lab-grid-") as tmp:
        copy = Path(tmp) / params_path.name  # the suffix picks DVC's writer
        shutil.copyfile(params_path, copy)
        try:
            apply_overrides(copy, overrides(cell))
        except DvcException as exc:
            cause = exc.__cause__ or exc
            raise ConfigError(f"DVC cannot apply -S {' '.join(overrides(cell))}: {cause}", fix="change the values in grid.axes") from None
        return load_params(copy)


def check_cell(params_path: Path, name: str, cell: Cell, what: str = "grid cell", values_in: str = "grid.axes") -> None:
    """The cell's params, as its queued run will see them, hold its values and pass the ``check``
    stage (rerank_lab.check: every stage's config and the sections' consistency). ``what`` and
    ``values_in`` name the cell and where its values come from in the errors (tier B: a trial, hpo.space)."""
    from rerank_lab import check

    params = applied(params_path, cell)
    for key, value in cell.items():
        got = section(params, key)
        if not (same(got, value) and type(got) is type(value)):
            why = "; params.yaml's YAML 1.1 reader takes an exponent without a dot for text" if isinstance(got, str) else ""
            raise ConfigError(
                f"DVC's -S {key}={hydra_value(value)} reads back as {show(got)}, not {show(value)}{why}",
                record=f"{what} {name}",
                fix=f"drop {_yaml(value)} from {values_in}.{key}" + (" (or the cell, with --where)" if values_in == "grid.axes" else ""),
            )
    try:
        check.configure(params)
    except RerankLabError as exc:
        record = exc.record or ""
        axis = next((k for k in cell if record == k or record.startswith((k + "[", k + "."))), None)
        more = f"change {_yaml(cell[axis])} in {values_in}.{axis}" if axis else "leave the cell out with --where"
        at = f"{what} {name}" + (f": {record}" if record else "")
        raise ConfigError(exc.problem, path=exc.path, record=at, fix=f"{exc.fix}; or {more}" if exc.fix else more) from None


# --- the queue ------------------------------------------------------------------------------


def taken(names: Sequence[str]) -> dict[str, str]:
    """Which of ``names`` are experiments of the current commit, queued, or running (DVC's own records)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.repo.experiments.utils import exp_refs_by_baseline

    try:
        with Repo() as repo:
            head = repo.scm.get_rev()
            found = {ref.name: "experiment" for ref in exp_refs_by_baseline(repo.scm, {head}).get(head, [])}
            queue = repo.experiments.celery_queue
            found |= {e.name: "queued" for e in queue.iter_queued() if e.name and e.baseline_rev == head}
            found |= {e.name: "running" for e in queue.iter_active() if e.name and e.baseline_rev == head}
    except DvcException as exc:
        fix = "run from a DVC repository's root with at least one commit"
        raise ConfigError(f"cannot read DVC's experiments here: {exc}", fix=fix) from None
    return {n: found[n] for n in names if n in found}


def _refusal(clash: dict[str, str], total: int) -> ConfigError:
    listed = {kind: " ".join(n for n, k in clash.items() if k == kind) for kind in ("experiment", "queued", "running")}
    how = {"experiment": "dvc exp remove", "queued": "dvc queue remove", "running": "dvc queue kill"}
    cmds = [f"{how[kind]} {names}" for kind, names in listed.items() if names]
    first, kind = next(iter(clash.items()))
    return ConfigError(
        f"{len(clash)} of {total} cells already exist ({first}: {kind}{', ...' if len(clash) > 1 else ''}); nothing queued",
        fix=f"remove them ({'; '.join(cmds)}), or queue only the others with --skip-existing, or pick cells with --where",
    )


def queue(
    params_path: Path,
    subset: str | None = None,
    where: Sequence[str] = (),
    *,
    dry_run: bool = False,
    skip_existing: bool = False,
    echo: Callable[[str], Any] = print,
) -> int:
    """Check, then queue the selected cells with ``dvc exp run --queue`` (or print the commands);
    returns how many were queued (or would be)."""
    params = load_params(params_path)
    axes = grid_axes(params, subset)
    chosen = cells(select(axes, where))
    names = cell_names(axes, chosen)
    for name, cell in zip(names, chosen, strict=True):
        check_cell(params_path, name, cell)
    if not dry_run:  # the cells' scores and checkpoints go there: an unwritable one fails now, not in every cell
        from rerank_lab.cache import cache_dir

        cache_dir()
    clash = taken(names)
    if clash and not skip_existing:
        raise _refusal(clash, len(names))
    todo = [(n, c) for n, c in zip(names, chosen, strict=True) if n not in clash]
    if clash:
        echo(f"skipped {len(clash)} existing: {' '.join(clash)}")
    default = (Path.cwd() / "params.yaml").resolve()
    prefix = "" if params_path.resolve() == default else f"{params_path}:"
    dvc = "dvc" if dry_run else shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))  # the venv's, off PATH
    for done, (name, cell) in enumerate(todo):
        args = ["exp", "run", "--queue", "-n", name, *(a for o in overrides(cell, prefix) for a in ("-S", o))]
        if dry_run:
            echo(shlex.join([dvc, *args]))
            continue
        try:
            proc = subprocess.run([dvc, *args], capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise ConfigError(
                "the dvc command was not found", fix="install the project (make install) or put its venv's bin on PATH"
            ) from None
        if proc.returncode:
            last = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()[-1]
            raise RerankLabError(
                f"dvc exp run --queue failed for {name} after {done} of {len(todo)} were queued: {last}",
                fix="fix the cause, then rerun with --skip-existing",
            )
        echo(f"queued {name}")
    verb = "would queue" if dry_run else "queued"
    echo(f"{verb} {len(todo)} of {len(names)} cells" + ("" if dry_run else " (run them: dvc queue start -j 2; compare: dvc exp show)"))
    return len(todo)
