"""Fusion of first-stage runs with ranx: reciprocal rank fusion and weighted score sums."""

from __future__ import annotations

import dataclasses

from rerank_lab.errors import ConfigError
from rerank_lab.io.trec import Run


def _ranx_fuse(runs: list[Run], method: str, params: dict, norm: str | None) -> Run:
    from ranx import Run as RanxRun
    from ranx import fuse

    # ranx asserts that every run holds the same queries; a query one retriever found nothing for
    # (no BM25 term matched, so its run file has no line for it) is an empty ranking in that run
    qids = sorted({qid for r in runs for qid in r})
    fused = fuse(runs=[RanxRun({qid: r.get(qid, {}) for qid in qids}) for r in runs], method=method, params=params, norm=norm)
    return {qid: {did: float(s) for did, s in docs.items()} for qid, docs in fused.to_dict().items()}


@dataclasses.dataclass(frozen=True)
class RRF:
    """Reciprocal rank fusion: ``sum_r 1 / (k0 + rank_r(d))`` over the input runs."""

    runs: tuple[str, ...] = ("bm25", "dense")
    k0: int = 60

    def fuse(self, runs: list[Run]) -> Run:
        return _ranx_fuse(runs, "rrf", {"k": self.k0}, norm=None)


NORMS = ("min-max", "max", "sum", "zmuv", "rank", "borda")


@dataclasses.dataclass(frozen=True)
class WeightedFusion:
    """Weighted sum of per-query normalised scores (``norm`` is any of ranx's normalisations)."""

    runs: tuple[str, ...] = ("bm25", "dense")
    weights: tuple[float, ...] = (0.5, 0.5)
    norm: str = "min-max"

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.runs):
            raise ConfigError(f"weighted fusion has {len(self.runs)} runs but {len(self.weights)} weights", fix="give one weight per run")
        if self.norm not in NORMS:
            raise ConfigError(f"unknown normalisation {self.norm!r}", fix=f"use one of: {', '.join(NORMS)}")

    def fuse(self, runs: list[Run]) -> Run:
        return _ranx_fuse(runs, "wsum", {"weights": list(self.weights)}, norm=self.norm)
