"""One contract for every stage, and the runner that enforces it.

A stage module exposes

* ``configure(params, **choices) -> cfg`` -- its typed config from params.yaml (``choices`` are
  the options that pick a params entry: ``--source``, ``--retriever`` ...); every problem is a
  :class:`~rerank_lab.errors.ConfigError` line;
* ``run(cfg, inputs, outputs) -> metrics`` -- the work: ``inputs`` maps option names to the paths
  it reads, ``outputs`` to the paths it must write (temporaries: the runner commits them), the
  result is the metrics JSON (or ``None``);
* optionally ``describe(cfg, metrics) -> str`` -- the line the command prints after committing,
  and ``VOLATILE`` -- metric keys that are printed but kept out of the metrics file (wall time,
  cache hits: they depend on the machine and history, not on the inputs).

:func:`run_stage` is the generic runner every command calls: read params, build the config,
:func:`~rerank_lab.io.outputs.guard` the paths (nothing overlaps an input, nothing but an earlier
output of the same stage is replaced, every path writable), run into temporaries, write the
metrics into a temporary too, then commit outputs and metrics together, last. A stage that fails
-- a bad record, a full disk, Ctrl-C -- leaves the previous outputs as they were.

A :class:`Stage` record says which options of a command are which; the command declares the
options and calls the runner. A new stage inherits all of this by declaring its record.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rerank_lab.io.outputs import Read, Written, guard, staged

log = logging.getLogger(__name__)


class StageModule(Protocol):
    """What a stage module provides (``describe`` and ``VOLATILE`` are optional)."""

    def configure(self, params: dict[str, Any], **choices: Any) -> Any: ...

    def run(self, cfg: Any, inputs: dict[str, Any], outputs: dict[str, Path]) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Hooks:
    """A stage's functions when its module holds more than one stage (index, retrieve and fuse
    share retrieve.py): the same names as a stage module's."""

    configure: Callable[..., Any]
    run: Callable[..., dict[str, Any] | None]
    describe: Callable[..., str | None] | None = None
    VOLATILE: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stage:
    """Which options of a command are which (names as click passes them: ``--runs`` -> ``runs``).

    ``inputs``: paths read (a ``multiple`` option gives a tuple; an omitted one ``None``);
    ``outputs``: folders written whole and committed last; ``metrics``: the metrics JSON file;
    ``kept``: folders updated in place and kept between runs (``stamp`` marks one as the stage's);
    ``caches``: files updated in place (score caches); ``choices``: options passed to
    ``configure``; ``around``: inputs an output may lie inside (report's ``--repo``);
    ``params``: whether the command reads ``--params`` (an input, like any other).
    """

    name: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("output",)
    metrics: str | None = None
    kept: tuple[str, ...] = ()
    stamp: str | None = None
    caches: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    around: tuple[str, ...] = ()
    params: bool = True

    def reads(self, options: dict[str, Any]) -> list[Read]:
        names = [*(["params"] if self.params else []), *self.inputs]
        return [Read(_flag(n), Path(p), n in self.around) for n in names for p in _paths(options.get(n))]

    def writes(self, options: dict[str, Any]) -> list[Written]:
        out = [Written(_flag(n), Path(options[n]), "folder") for n in self.outputs]
        out += [Written(_flag(self.metrics), Path(options[self.metrics]), "file")] if self.metrics else []
        out += [Written(_flag(n), Path(options[n]), "kept", self.stamp) for n in self.kept if options.get(n) is not None]
        out += [Written(_flag(n), Path(options[n]), "cache") for n in self.caches if options.get(n) is not None]
        return out


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _paths(value: Any) -> Iterable[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, tuple | list) else [str(value)]


def _as_paths(value: Any) -> Any:
    if value is None:
        return None
    return tuple(Path(v) for v in value) if isinstance(value, tuple | list) else Path(value)


def run_stage(stage: Stage, module: StageModule | Hooks, options: dict[str, Any]) -> dict[str, Any] | None:
    """Parse params, build the config, guard the paths, run, commit outputs and metrics together.

    Returns the metrics (volatile keys included); the stage's ``describe`` line goes to stdout.
    """
    import click

    from rerank_lab.io.atomic import write_text
    from rerank_lab.params_file import load_params

    params = load_params(options["params"]) if stage.params else {}
    cfg = module.configure(params, **{c: options[c] for c in stage.choices})
    writes = stage.writes(options)
    guard(stage.name, stage.reads(options), writes)
    inputs = {n: _as_paths(options.get(n)) for n in stage.inputs}
    in_place = {w.flag[2:].replace("-", "_"): w.path for w in writes if w.kind in ("kept", "cache")}
    with staged(stage.name, writes) as staging:
        outputs = {n: staging.paths[_flag(n)] for n in stage.outputs} | in_place
        metrics = module.run(cfg, inputs, outputs)
        if stage.metrics:
            volatile = getattr(module, "VOLATILE", ())
            kept = {k: v for k, v in (metrics or {}).items() if k not in volatile}
            write_text(staging.paths[_flag(stage.metrics)], json.dumps(kept, indent=2, sort_keys=True) + "\n")
    describe = getattr(module, "describe", None)
    line = describe(cfg, metrics) if describe is not None else None
    if line:
        click.echo(line)
    return metrics
