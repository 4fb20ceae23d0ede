"""params.yaml, parsed once into frozen dataclasses; each stage reads only its own section.

Unknown keys are errors (a typo in params.yaml must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import yaml

from rerank_lab.errors import ConfigError

T = TypeVar("T")


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read params.yaml into a dict."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("params file not found", path=p, fix="run from the repository root or pass --params")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=p, fix="fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise ConfigError("top level must be a mapping", path=p, fix="write key: value pairs")
    return data


def section(params: dict[str, Any], dotted: str) -> Any:
    """``params['a']['b']`` for ``'a.b'``, with an error naming the missing key."""
    node: Any = params
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            raise ConfigError(f"params has no {dotted!r}", fix=f"add {dotted} to params.yaml")
        node = node[key]
    return node


def build(cls: type[T], values: dict[str, Any] | None, where: str, **extra: Any) -> T:
    """Instantiate dataclass ``cls`` from a params mapping; unknown keys list the valid ones."""
    values = dict(values or {})
    values.update(extra)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}", fix=f"valid keys: {', '.join(sorted(names))}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}", fix="check params.yaml") from None


@dataclasses.dataclass(frozen=True)
class ConvertConfig:
    """``convert.seed`` plus one ``convert.sources.<dataset>`` entry."""

    format: str
    seed: int = 42
    # Open Provence's rule for a missing split: 1% of train queries, at most 5,000.
    validation_fraction: float = 0.01
    validation_max: int = 5000
    test_fraction: float = 0.01
    test_max: int = 5000
    on_missing_doc: str = "error"  # or "drop": qrels naming a doc the corpus lacks (ArguAna has 5)
    teacher_name: str = "source"  # hardneg: the teacher_scores.<name> column for pos/neg scores
    # read by retrieve, not convert: drop the hit whose doc id is the query id (pyserini's --remove-query)
    remove_query: bool = False
    max_drop_fraction: float = 0.5  # a split losing more than this share of its judged queries (on_missing_doc: drop) stops

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_drop_fraction <= 1.0:
            raise ConfigError(f"convert max_drop_fraction must be in [0, 1], got {self.max_drop_fraction}", fix="e.g. 0.5")
        for name in ("validation_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"convert {name} must be in [0, 1), got {getattr(self, name)}", fix="use a fraction such as 0.01")
        if self.on_missing_doc not in ("error", "drop"):
            raise ConfigError(f"on_missing_doc must be 'error' or 'drop', got {self.on_missing_doc!r}", fix="use error or drop")


@dataclasses.dataclass(frozen=True)
class DedupConfig:
    """``dedup``: drop rows with a passage seen more than ``max_duplicates`` other times in their
    split, for datasets of the source ``formats`` whose texts were mined (see rerank_lab.dedup)."""

    max_duplicates: int | None = 0
    splits: tuple[str, ...] = ("train",)
    formats: tuple[str, ...] = ("triplets", "hardneg")
    max_drop_fraction: float = 0.5  # a split losing more than this share of its rows stops the stage

    def __post_init__(self) -> None:
        object.__setattr__(self, "splits", tuple(self.splits))
        object.__setattr__(self, "formats", tuple(self.formats))
        if self.max_duplicates is not None and self.max_duplicates < 0:
            raise ConfigError(
                f"dedup max_duplicates must be >= 0 or null, got {self.max_duplicates}", fix="use 0 (Open Provence) or null to keep all"
            )
        if not 0.0 <= self.max_drop_fraction <= 1.0:
            raise ConfigError(f"dedup.max_drop_fraction must be in [0, 1], got {self.max_drop_fraction}", fix="e.g. 0.5")


@dataclasses.dataclass(frozen=True)
class RetrieveConfig:
    """``retrieve``: depth of every run and the splits to retrieve for."""

    depth: int = 100
    splits: tuple[str, ...] = ("train", "validation", "test")

    def __post_init__(self) -> None:
        object.__setattr__(self, "splits", tuple(self.splits))
        if self.depth < 1:
            raise ConfigError(f"retrieve depth must be >= 1, got {self.depth}", fix="use e.g. 100")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """``evaluate``: metric names (``ndcg@10``, ``mrr@10``, ``recall@100`` ...) and splits."""

    metrics: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@10", "recall@100")
    splits: tuple[str, ...] = ("validation", "test")
    baseline: str | None = None  # a run every other run is compared with (paired tests); None: no tests
    compare_also: tuple[str, ...] = ()  # more reference runs for the same paired tests (e.g. the untuned reranker)
    significance_metric: str = "ndcg@10"
    n_resamples: int = 10000
    confidence: float = 0.95
    seed: int = 0
    n_bins: int = 10  # reliability diagram / ECE bins

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "splits", tuple(self.splits))
        object.__setattr__(self, "compare_also", tuple(self.compare_also))
        if self.compare_also and self.baseline is None:
            raise ConfigError("evaluate.compare_also needs evaluate.baseline", fix="set the baseline run first")
        if self.baseline is not None and self.significance_metric not in self.metrics:
            raise ConfigError(
                f"significance_metric {self.significance_metric!r} is not among evaluate.metrics",
                fix=f"use one of: {', '.join(self.metrics)}",
            )
