"""Document token pooling as a sentence-transformers module, for pool-aware training.

:class:`ClusterTokenPooling` is :func:`rerank_lab.late_interaction.pooling.pool` (hierarchical or
k-means, the first tokens protected) behind sentence-transformers' ``BaseTokenPooling``, so
``MultiVectorTokenPoolingLoss`` pools the documents of a training batch with exactly the clustering
the score stage applies to an index: the cluster assignment is found without gradient, the pooled
vectors are (re-normalised) means of the differentiable token embeddings, so every token of a
cluster gets a gradient through its mean.
"""

from __future__ import annotations

from sentence_transformers.multi_vector_encoder.modules import BaseTokenPooling
from torch import Tensor

from rerank_lab.late_interaction.pooling import _check, pool_tokens_torch


class ClusterTokenPooling(BaseTokenPooling):
    """Pools each document's tokens by ``method`` into about ``1 / pool_factor`` of them (queries
    pass through: ``tasks`` defaults to documents only)."""

    config_keys: list[str] = ["pool_factor", "method", "seed", "num_protected_tokens", "normalize_embeddings", "tasks"]

    def __init__(
        self,
        pool_factor: int = 1,
        method: str = "kmeans",
        seed: int = 0,
        num_protected_tokens: int = 1,
        normalize_embeddings: bool = True,
        *,
        tasks: str | list[str] | None = None,
    ) -> None:
        super().__init__(tasks=tasks)
        _check(pool_factor, method, num_protected_tokens)
        self.pool_factor, self.method, self.seed = pool_factor, method, seed
        self.num_protected_tokens, self.normalize_embeddings = num_protected_tokens, normalize_embeddings
        self.calls = 0  # batches of documents pooled (a pool-aware run's metrics count them)

    def forward(self, features: dict[str, Tensor], task: str | None = None) -> dict[str, Tensor]:
        if self.applies_to(task):
            self.calls += 1
        return super().forward(features, task=task)

    def pool_one(self, embedding: Tensor, **kwargs) -> Tensor:
        return pool_tokens_torch(embedding, self.pool_factor, self.method, self.seed, self.num_protected_tokens, self.normalize_embeddings)

    def __repr__(self) -> str:
        return f"ClusterTokenPooling({self.method}, x{self.pool_factor})"
