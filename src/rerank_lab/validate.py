"""A whole params dict checked the way the stages check it, without running any stage.

Every stage validates its own params when it starts (``configure`` in rerank_lab.stage's contract).
:func:`validate_params` calls every stage's ``configure`` on one params dict, with the choices
``dvc.yaml`` passes: each ``datasets`` entry as ``--source``, each ``first_stage`` entry as
``--retriever``, each ``fusion`` entry as ``--fusion``. A params file that would stop a stage
halfway through the pipeline is refused before anything runs: ``rerank-lab grid queue`` checks
every cell with it, and the ``check`` stage runs it first. Nothing is duplicated from the stages: a
new check in a stage's config applies here as it lands.

The stage modules are imported by name inside :func:`configures` (not through importlib), so
rerank_lab.deps sees that whatever runs this check executes every stage's config code.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from rerank_lab.config import FieldError, section

# A stage choice -> the top-level params list whose entries dvc.yaml passes as that option.
CHOICE_LISTS = {"source": "datasets", "retriever": "first_stage", "fusion": "fusion"}

# Every command of cli.py that reads params and the choices it takes ('check' runs this very
# check; report reads no params). tests/test_grid.py keeps this equal to cli.py's Stage records.
CHOICES: dict[str, tuple[str, ...]] = {
    "convert": ("source",),
    "dedup": ("source",),
    "index": ("retriever",),
    "retrieve": ("retriever", "source"),
    "fuse": ("fusion",),
    "mine": (),
    "label": (),
    "teacher-score": (),
    "train": (),
    "train-late": (),
    "score": (),
    "tune": (),
    "evaluate": (),
    "headline": (),
}
SELF = "check"


def configures() -> dict[str, Callable[..., Any]]:
    """Each command's ``configure`` (index, retrieve and fuse share rerank_lab.retrieve)."""
    from rerank_lab import convert, dedup, evaluate, headline, label, mine, retrieve, score, teacher, train, tune
    from rerank_lab.late_interaction import train as train_late

    return {
        "convert": convert.configure,
        "dedup": dedup.configure,
        "index": retrieve.INDEX.configure,
        "retrieve": retrieve.RETRIEVE.configure,
        "fuse": retrieve.FUSE.configure,
        "mine": mine.configure,
        "label": label.configure,
        "teacher-score": teacher.configure,
        "train": train.configure,
        "train-late": train_late.configure,
        "score": score.configure,
        "tune": tune.configure,
        "evaluate": evaluate.configure,
        "headline": headline.configure,
    }


def names(params: dict[str, Any], key: str) -> list[str]:
    """A top-level list of entry names (``datasets``, ``first_stage``; ``fusion`` may be empty)."""
    value = section(params, key)
    if key == "fusion" and value in (None, []):
        return []
    if not isinstance(value, list) or not value:
        fix = f"write a YAML list: [{value}]" if isinstance(value, str) else "list at least one name"
        raise FieldError((key,), "must be a non-empty list of names", value, fix=fix)
    for i, name in enumerate(value):
        if not isinstance(name, str):
            raise FieldError((key, i), "must be a name", name, fix="write the name of an entry")
    return value


def validate_params(params: dict[str, Any]) -> None:
    """Run every stage's ``configure`` on ``params`` as ``dvc repro`` would: once per combination of
    the entries its choices take. The first problem is raised as the stage raises it (one
    :class:`~rerank_lab.errors.ConfigError` line naming the key, the value and the fix)."""
    for name, configure in configures().items():
        lists = [[(choice, entry) for entry in names(params, CHOICE_LISTS[choice])] for choice in CHOICES[name]]
        for combo in itertools.product(*lists):
            configure(params, **dict(combo))
