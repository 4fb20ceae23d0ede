"""Experiment names of the grid's cells (:mod:`rerank_lab.grid`).

**Names**: each cell's experiment is named ``<label>-<value>`` per axis, joined by ``.``
(``loss-listnet.miner-hard.epsilon-0.5``). The label is the key's last segment, or as many of
its last segments as it takes to be unique, joined by ``_`` (``train_seed``/``mine_seed``);
values are written as in YAML (``true``, ``null``, list items joined by ``+``). A value that
does not read back as itself -- a character a git ref or DVC name cannot hold, replaced by ``_``,
or a string YAML reads as another type (``'1'``) -- or a name over 100 characters adds a short
hash of the cell. A name depends only on its cell and the axes' keys: the same however the cell
is selected (--where, a subset that restricts values).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

import yaml

from rerank_lab.config import show

Axes = dict[str, tuple[Any, ...]]  # a params key -> the values it takes
Cell = dict[str, Any]  # a params key -> one of its values
MAX_NAME = 100


def labels(keys: Sequence[str]) -> dict[str, str]:
    """Each key's shortest unique tail of segments, joined by ``_``.

    >>> labels(["train.loss", "train.seed", "mine.seed", "datasets"])
    {'train.loss': 'loss', 'train.seed': 'train_seed', 'mine.seed': 'mine_seed', 'datasets': 'datasets'}
    """
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = parts[-n:]
            if not any(other != key and other.split(".")[-n:] == tail for other in keys):
                break
        out[key] = "_".join(tail)
    return out


def _name_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "+".join(_name_value(v) for v in value)
    return show(value) if isinstance(value, bool | None) else str(value)


def _plain(value: Any) -> bool:
    """Whether a value's text in a name is itself: no character replaced, and not a string YAML
    reads as something else (``'1'``, ``'null'``) -- else the name carries the cell's hash."""
    if isinstance(value, list | tuple):
        return bool(value) and all(_plain(v) and not isinstance(v, list | tuple) for v in value)
    if isinstance(value, str):
        return re.fullmatch(r"[A-Za-z0-9_.-]+", value) is not None and yaml.safe_load(value) == value
    return True


def _ref_safe(text: str) -> str:
    """Only characters a git ref component and a DVC experiment name take, no ``..``, no ``.`` or
    ``.lock`` at the end."""
    text = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9_.+-]+", "_", text))
    return text + "_" if text.endswith((".", ".lock")) else text


def _digest(cell: Cell) -> str:
    return hashlib.sha1(json.dumps(cell, sort_keys=True, default=str).encode()).hexdigest()[:7]


def cell_names(axes: Axes, chosen: list[Cell]) -> list[str]:
    """Experiment names of ``chosen`` cells of ``axes``; each depends on its cell and the axes' keys only.

    >>> axes = {"train.loss": ("listnet",), "tune.epsilon": (0.2,), "datasets": (["nfcorpus", "arguana"],)}
    >>> from rerank_lab.grid import cells
    >>> cell_names(axes, cells(axes))
    ['loss-listnet.epsilon-0.2.datasets-nfcorpus+arguana']
    >>> cell_names({"model": ("BAAI/bge", "BAAI:bge")}, [{"model": "BAAI/bge"}, {"model": "BAAI:bge"}])
    ['model-BAAI_bge-464f2b3', 'model-BAAI_bge-ed3b645']
    """
    label = labels(list(axes))
    names = []
    for cell in chosen:
        raw = ".".join(f"{label[k]}-{_name_value(v)}" for k, v in cell.items())
        name = _ref_safe(raw)
        exact = name == raw and len(name) <= MAX_NAME and all(_plain(v) for v in cell.values())
        names.append(name if exact else f"{name[: MAX_NAME - 8]}-{_digest(cell)}")
    # exact names of distinct cells differ (labels are unique, plain values read back as themselves);
    # a clash left over (an axis mixing [a] and a) still gets the hash
    return [f"{n}-{_digest(c)}" if names.count(n) > 1 else n for n, c in zip(names, chosen, strict=True)]
