"""N3: a mix of hard and random negatives (default 50/50, the research plan's starting point)."""

from __future__ import annotations

import dataclasses
import random

from rerank_lab.errors import ConfigError
from rerank_lab.miners.base import MineContext
from rerank_lab.miners.random_negatives import RandomMiner
from rerank_lab.miners.retriever_hard import RetrieverHardMiner
from rerank_lab.schema import Example


@dataclasses.dataclass(frozen=True)
class MixedMiner:
    """``round(k * hard_ratio)`` retriever-hard negatives, the rest (and any shortfall) random."""

    run: str = "bm25"
    hard_ratio: float = 0.5
    range_min: int = 10
    range_max: int = 100
    absolute_margin: float | None = None
    relative_margin: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.hard_ratio <= 1.0:
            raise ConfigError(f"hard_ratio must be in [0, 1], got {self.hard_ratio}", fix="e.g. 0.5")

    def negatives(self, ctx: MineContext, row: Example, k: int, rng: random.Random, exclude: set[str] = frozenset()) -> list[str]:
        hard = RetrieverHardMiner(self.run, self.range_min, self.range_max, "random", self.absolute_margin, self.relative_margin)
        chosen = hard.negatives(ctx, row, round(k * self.hard_ratio), rng, exclude)
        return chosen + RandomMiner().negatives(ctx, row, k - len(chosen), rng, set(exclude) | set(chosen))
