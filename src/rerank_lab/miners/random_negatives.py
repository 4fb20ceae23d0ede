"""N0: random negatives, uniform over the corpus minus relevant docs and the row's own texts."""

from __future__ import annotations

import random

from rerank_lab.config import params_model
from rerank_lab.miners.base import MineContext
from rerank_lab.schema import Example


@params_model("miners.<name>")
class RandomMiner:
    """Uniform negatives; needs no run."""

    def negatives(self, ctx: MineContext, row: Example, k: int, rng: random.Random, exclude: set[str] = frozenset()) -> list[str]:
        banned = ctx.excluded(row) | set(exclude)
        out: list[str] = []
        # rejection sampling stays O(k) on large corpora; fall back to a full scan when they run out
        for _ in range(20 * k):
            if len(out) == k:
                return out
            d = ctx.doc_ids[rng.randrange(len(ctx.doc_ids))]
            if d not in banned and d not in out:
                out.append(d)
        pool = [d for d in ctx.doc_ids if d not in banned and d not in out]
        return out + rng.sample(pool, min(k - len(out), len(pool)))
