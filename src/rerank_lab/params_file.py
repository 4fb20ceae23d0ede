"""Reading params.yaml: :func:`load_params`, the one reader every stage and the grid use."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from rerank_lab.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, reading floats as YAML 1.2 (and DVC) write them: ``2e-05`` is a number.

    PyYAML follows YAML 1.1, where an exponent needs a dot (``2.0e-05``); ``dvc exp run -S
    train.learning_rate=2e-5`` writes ``2e-05`` back into params.yaml, which would then read as text.
    """


_Loader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read params.yaml into a dict (floats as YAML 1.2 writes them, see :class:`_Loader`).

    >>> yaml.load("lr: 2e-05", Loader=_Loader), yaml.safe_load("lr: 2e-05")
    ({'lr': 2e-05}, {'lr': '2e-05'})
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError("params file not found", path=p, fix="run from the repository root or pass --params")
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_Loader) or {}  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=p, fix="fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping", path=p, fix="write key: value pairs")
    return data
