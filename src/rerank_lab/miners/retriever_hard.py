"""N1: hard negatives from any first-stage run (BM25, dense, fused), with rank range and margins."""

from __future__ import annotations

import dataclasses
import random

from rerank_lab.errors import ConfigError
from rerank_lab.miners.base import MineContext
from rerank_lab.schema import Example


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


@dataclasses.dataclass(frozen=True)
class RetrieverHardMiner:
    """Negatives from ranks ``range_min+1 .. range_max`` of ``run``; ``sampling`` top or random."""

    run: str = "bm25"
    range_min: int = 10
    range_max: int = 100
    sampling: str = "random"
    absolute_margin: float | None = None
    relative_margin: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.range_min < self.range_max:
            raise ConfigError(
                f"need 0 <= range_min < range_max, got {self.range_min}, {self.range_max}", fix="e.g. range_min 10, range_max 100"
            )
        if self.sampling not in ("top", "random"):
            raise ConfigError(f"unknown sampling {self.sampling!r}", fix="use top or random")

    def positive_score(self, ctx: MineContext, row: Example) -> float | None:
        scores = ctx.runs[self.run].get(row["id"], {})
        pos = [scores[d] for d in ctx.relevant.get(row["id"], ()) if d in scores]
        return min(pos) if pos else None

    def negatives(self, ctx: MineContext, row: Example, k: int, rng: random.Random, exclude: set[str] = frozenset()) -> list[str]:
        cands = [(d, s) for d, s in ctx.candidates(self.run, row, self.range_min, self.range_max) if d not in exclude]
        cands = margin_filter(cands, self.positive_score(ctx, row), self.absolute_margin, self.relative_margin)
        ids = [d for d, _ in cands]
        return ids[:k] if self.sampling == "top" else rng.sample(ids, min(k, len(ids)))
