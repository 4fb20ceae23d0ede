"""Build a configured component from a registry: ``{type: <registry key>, <field>: <value>, ...}``."""

from __future__ import annotations

from typing import Any

from rerank_lab.config import build
from rerank_lab.errors import ConfigError, unknown_name


def make(registry: dict[str, type], kind: str, name: str, settings: dict[str, Any] | None) -> Any:
    """Instantiate ``registry[settings['type']]`` with the other keys (lists become tuples).

    ``kind`` and ``name`` only serve the error messages (``retrievers.<name>``).
    """
    settings = dict(settings or {})
    if "type" not in settings:
        raise ConfigError(f"{kind} {name!r} has no 'type'", fix=f"set type to one of: {', '.join(registry)}")
    type_name = settings.pop("type")
    if type_name not in registry:
        raise unknown_name(f"{kind} type", type_name, list(registry))
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    return build(registry[type_name], settings, where=f"{kind}s.{name}")
