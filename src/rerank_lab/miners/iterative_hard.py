"""N2: iterative hard negatives: a reranker from an earlier train run rescores the candidates."""

from __future__ import annotations

import random

from pydantic import Field

from rerank_lab.config import Number, invalid, params_model
from rerank_lab.io.trec import ranked
from rerank_lab.miners.base import MineContext
from rerank_lab.miners.retriever_hard import check_range, margin_filter
from rerank_lab.schema import Example


@params_model("miners.<name>")
class IterativeHardMiner:
    """The reranker's top-scoring non-relevant docs among ranks ``range_min+1 .. range_max`` of ``run``."""

    model: str = ""  # required (checked below, saying what it must be)
    run: str = Field("bm25", min_length=1)
    range_min: int = Field(0, ge=0)
    range_max: int = Field(100, ge=1)
    max_length: int = Field(256, ge=1)
    absolute_margin: Number | None = None

    def __post_init__(self) -> None:
        if not self.model:
            raise invalid(self, "model", "is needed: a reranker trained by an earlier train run", fix="set it to models/<key>")
        check_range(self)

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
