"""N2: iterative hard negatives: a reranker from an earlier train run rescores the candidates."""

from __future__ import annotations

import dataclasses
import random

from rerank_lab.errors import ConfigError
from rerank_lab.io.trec import ranked
from rerank_lab.miners.base import MineContext
from rerank_lab.miners.retriever_hard import margin_filter
from rerank_lab.schema import Example


@dataclasses.dataclass(frozen=True)
class IterativeHardMiner:
    """The reranker's top-scoring non-relevant docs among ranks ``range_min+1 .. range_max`` of ``run``."""

    model: str = ""
    run: str = "bm25"
    range_min: int = 0
    range_max: int = 100
    max_length: int = 256
    absolute_margin: float | None = None

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError(
                "the iterative miner needs `model`: a reranker trained by an earlier train run",
                fix="set miners.<name>.model to models/<key>",
            )
        if not 0 <= self.range_min < self.range_max:
            raise ConfigError(
                f"need 0 <= range_min < range_max, got {self.range_min}, {self.range_max}", fix="e.g. range_min 0, range_max 100"
            )

    def negatives(self, ctx: MineContext, row: Example, k: int, rng: random.Random, exclude: set[str] = frozenset()) -> list[str]:
        cands = [d for d, _ in ctx.candidates(self.run, row, self.range_min, self.range_max) if d not in exclude]
        if not cands:
            return []
        scorer = ctx.scorers[self.model]
        passages = [ctx.text(d) for d in cands]
        scores = scorer.score([(row["query"], p) for p in passages])
        positives = [t for t, label in zip(row["texts"], row["labels"]) if label]
        pos_score = float(min(scorer.score([(row["query"], p) for p in positives]))) if positives else None
        rescored = ranked(dict(zip(cands, scores.tolist())))
        return [d for d, _ in margin_filter(rescored, pos_score, self.absolute_margin, None)][:k]
