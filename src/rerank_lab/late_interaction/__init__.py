"""Late interaction (ColBERT-style multi-vector scoring): document token pooling and MaxSim
(:mod:`rerank_lab.late_interaction.pooling`), the same pooling as a sentence-transformers module for
pool-aware training (:mod:`rerank_lab.late_interaction.token_pooling`), and the train-late stage
(:mod:`rerank_lab.late_interaction.train`).
"""

from __future__ import annotations

from rerank_lab.late_interaction.pooling import (
    POOL_METHODS,
    cluster_labels,
    maxsim,
    maxsim_pair,
    pool,
    pool_tokens_torch,
    pool_torch,
    pooled_count,
)

__all__ = ["POOL_METHODS", "cluster_labels", "maxsim", "maxsim_pair", "pool", "pool_tokens_torch", "pool_torch", "pooled_count"]
