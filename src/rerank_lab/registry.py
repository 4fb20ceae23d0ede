"""Build a configured component from a registry: ``{type: <registry key>, <field>: <value>, ...}``."""

from __future__ import annotations

from typing import Any

from rerank_lab.config import FieldError, choice_error, not_a_mapping, parse


def make(registry: dict[str, type], kind: str, name: str, settings: dict[str, Any] | None) -> Any:
    """Instantiate ``registry[settings['type']]`` with the other keys, validated by the class's
    typed fields (:func:`rerank_lab.config.parse`).

    ``kind`` and ``name`` name the params entry in errors (``retrievers.<name>``).
    """
    where = f"{kind}s.{name}"
    if settings is not None and not isinstance(settings, dict):
        raise not_a_mapping(settings, where, fix=f"write type: and its settings under {where}")
    settings = dict(settings or {})
    if "type" not in settings:
        raise FieldError(("type",), "missing", fix=f"set type to one of: {', '.join(registry)}", where=where)
    type_name = settings.pop("type")
    if not isinstance(type_name, str) or type_name not in registry:
        raise choice_error(("type",), type_name, sorted(registry), what=f"{kind} type").at(where)
    return parse(registry[type_name], settings, where)
