"""N1: hard negatives from any first-stage run (BM25, dense, fused), with rank range and margins."""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from rerank_lab.config import Number, invalid, params_model
from rerank_lab.miners.base import MineContext
from rerank_lab.schema import Example


def check_range(miner) -> None:
    """A rank window ``range_min+1 .. range_max`` that holds at least one rank."""
    if miner.range_min >= miner.range_max:
        raise invalid(miner, "range_max", f"must be > range_min ({miner.range_min})", fix="e.g. range_min 10, range_max 100")


def margin_filter(
    cands: list[tuple[str, float]], positive_score: float | None, absolute: float | None, relative: float | None
) -> list[tuple[str, float]]:
    """Drop candidates scored too close to the positive: likely unlabelled positives.

    A candidate stays if ``score <= positive - absolute`` and ``score <= positive * (1 - relative)``
    (sentence-transformers' ``mine_hard_negatives`` margins). Without a positive score, no filter.

    >>> margin_filter([("a", 9.0), ("b", 5.0)], 10.0, absolute=2.0, relative=None)
    [('b', 5.0)]
    """
    if positive_score is None:
        return cands
    if absolute is not None:
        cands = [(d, s) for d, s in cands if s <= positive_score - absolute]
    if relative is not None:
        cands = [(d, s) for d, s in cands if s <= positive_score * (1 - relative)]
    return cands


@params_model("miners.<name>")
class RetrieverHardMiner:
    """Negatives from ranks ``range_min+1 .. range_max`` of ``run``; ``sampling`` top or random."""

    run: str = Field("bm25", min_length=1)
    range_min: int = Field(10, ge=0)
    range_max: int = Field(100, ge=1)
    sampling: Literal["top", "random"] = "random"
    absolute_margin: Number | None = None
    relative_margin: Number | None = None

    def __post_init__(self) -> None:
        check_range(self)

    def positive_score(self, ctx: MineContext, row: Example) -> float | None:
        scores = ctx.runs[self.run].get(row["id"], {})
        pos = [scores[d] for d in ctx.relevant.get(row["id"], ()) if d in scores]
        return min(pos) if pos else None

    def negatives(self, ctx: MineContext, row: Example, k: int, rng: random.Random, exclude: set[str] = frozenset()) -> list[str]:
        cands = [(d, s) for d, s in ctx.candidates(self.run, row, self.range_min, self.range_max) if d not in exclude]
        cands = margin_filter(cands, self.positive_score(ctx, row), self.absolute_margin, self.relative_margin)
        ids = [d for d, _ in cands]
        return ids[:k] if self.sampling == "top" else rng.sample(ids, min(k, len(ids)))
