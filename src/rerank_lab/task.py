"""The ``task`` section: what a candidate is (read by convert, retrieve and mine)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from rerank_lab.config import params_model, parse


@params_model("task")
class TaskConfig:
    """``task``: what a candidate is -- a document, or a sentence of the documents attached to a
    query (sentence mode: :mod:`rerank_lab.convert.sentence_task`); read by convert, retrieve and mine."""

    unit: Literal["documents", "sentences"] = "documents"
    context: int = Field(0, ge=0, le=5)  # sentences: this many neighbouring sentences a side, shown with each candidate


def task_config(params: dict[str, Any]) -> TaskConfig:
    """The ``task`` section; absent, documents (the params files of earlier versions)."""
    return parse(TaskConfig, params.get("task"), "task")
