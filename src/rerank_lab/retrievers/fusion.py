"""Fusion of first-stage runs with ranx: reciprocal rank fusion and weighted score sums."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field

from rerank_lab.config import ListOf, Number, invalid, params_model
from rerank_lab.io.trec import Run


def _ranx_fuse(runs: list[Run], method: str, params: dict, norm: str | None) -> Run:
    from ranx import Run as RanxRun
    from ranx import fuse

    # ranx asserts that every run holds the same queries; a query one retriever found nothing for
    # (no BM25 term matched, so its run file has no line for it) is an empty ranking in that run
    qids = sorted({qid for r in runs for qid in r})
    fused = fuse(runs=[RanxRun({qid: r.get(qid, {}) for qid in qids}) for r in runs], method=method, params=params, norm=norm)
    return {qid: {did: float(s) for did, s in docs.items()} for qid, docs in fused.to_dict().items()}


@params_model("fusions.<name>")
class RRF:
    """Reciprocal rank fusion: ``sum_r 1 / (k0 + rank_r(d))`` over the input runs."""

    runs: ListOf[str] = Field(("bm25", "dense"), min_length=1)
    k0: int = Field(60, ge=0)

    def fuse(self, runs: list[Run]) -> Run:
        return _ranx_fuse(runs, "rrf", {"k": self.k0}, norm=None)


Norm = Literal["min-max", "max", "sum", "zmuv", "rank", "borda"]  # ranx's normalisations
NORMS = get_args(Norm)


@params_model("fusions.<name>")
class WeightedFusion:
    """Weighted sum of per-query normalised scores (``norm`` is any of ranx's normalisations)."""

    runs: ListOf[str] = Field(("bm25", "dense"), min_length=1)
    weights: ListOf[Number] = (0.5, 0.5)
    norm: Norm = "min-max"

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.runs):
            n = len(self.runs)
            raise invalid(self, "weights", f"must list one weight per run ({n} run{'s' if n != 1 else ''})", fix="give one weight per run")

    def fuse(self, runs: list[Run]) -> Run:
        return _ranx_fuse(runs, "wsum", {"weights": list(self.weights)}, norm=self.norm)
