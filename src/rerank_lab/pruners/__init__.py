"""Span pruners for the label stage: one implementation per file, one registry entry each.

A pruner scores (query, span) pairs -- higher means "keep this span as evidence" -- and the label
stage turns the scores into 0/1 span labels at a threshold. A params.yaml entry
``pruners.<name>`` names its ``type`` here; the rest of the entry are that class's fields.
"""

from __future__ import annotations

from typing import Any, Protocol

from rerank_lab.pruners.cross_encoder import CrossEncoderPruner
from rerank_lab.pruners.llm import LLMPruner
from rerank_lab.registry import make


class Pruner(Protocol):
    """``scores(pairs, records, cache)``: one score per (query, span) pair; ``records`` name each
    pair's row, text and span for error messages; ``cache`` is the per-user score cache folder."""

    def scores(self, pairs: list[tuple[str, str]], records: list[str], cache: Any) -> list[float]: ...


PRUNERS: dict[str, type] = {
    "cross-encoder": CrossEncoderPruner,
    "llm": LLMPruner,
}


def make_pruner(name: str, settings: dict[str, Any]):
    """The pruner configured as ``pruners.<name>`` in params.yaml."""
    return make(PRUNERS, "pruner", name, settings)
