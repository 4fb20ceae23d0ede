"""N3: a mix of hard and random negatives (default 50/50, the research plan's starting point)."""

from __future__ import annotations

import random

from pydantic import Field

from rerank_lab.config import Number, params_model
from rerank_lab.miners.base import MineContext
from rerank_lab.miners.random_negatives import RandomMiner
from rerank_lab.miners.retriever_hard import RetrieverHardMiner, check_range
from rerank_lab.schema import Example


@params_model("miners.<name>")
class MixedMiner:
    """``round(k * hard_ratio)`` retriever-hard negatives, the rest (and any shortfall) random."""

    run: str = Field("bm25", min_length=1)
    hard_ratio: Number = Field(0.5, ge=0, le=1)
    range_min: int = Field(10, ge=0)
    range_max: int = Field(100, ge=1)
    absolute_margin: Number | None = None
    relative_margin: Number | None = None

    def __post_init__(self) -> None:
        check_range(self)

    def negatives(self, ctx: MineContext, row: Example, k: int, rng: random.Random, exclude: set[str] = frozenset()) -> list[str]:
        hard = RetrieverHardMiner(self.run, self.range_min, self.range_max, "random", self.absolute_margin, self.relative_margin)
        chosen = hard.negatives(ctx, row, round(k * self.hard_ratio), rng, exclude)
        return chosen + RandomMiner().negatives(ctx, row, k - len(chosen), rng, set(exclude) | set(chosen))
