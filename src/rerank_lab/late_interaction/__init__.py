"""Late interaction (ColBERT-style multi-vector scoring): document token pooling, MaxSim and the
per-batch pool factor of pool-aware training (:mod:`rerank_lab.late_interaction.pooling`).

A library for the coming late-interaction reranker family; no stage imports it yet.
"""

from __future__ import annotations

from rerank_lab.late_interaction.pooling import (
    POOL_METHODS,
    cluster_labels,
    maxsim,
    maxsim_pair,
    pool,
    pool_factor_sampler,
    pool_torch,
    pooled_count,
)

__all__ = ["POOL_METHODS", "cluster_labels", "maxsim", "maxsim_pair", "pool", "pool_factor_sampler", "pool_torch", "pooled_count"]
