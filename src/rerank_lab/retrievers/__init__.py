"""Candidate generators: one implementation per file, one registry entry each.

A params.yaml entry ``retrievers.<name>`` (or ``fusions.<name>``) names its ``type`` here; the
rest of the entry are that class's fields. Adding a retriever = one file + one line below.
"""

from __future__ import annotations

from typing import Any

from rerank_lab.registry import make
from rerank_lab.retrievers.bm25_bm25s import Bm25sBM25
from rerank_lab.retrievers.bm25_pyserini import PyseriniBM25
from rerank_lab.retrievers.dense import DenseRetriever
from rerank_lab.retrievers.fusion import RRF, WeightedFusion

RETRIEVERS: dict[str, type] = {
    "bm25-pyserini": PyseriniBM25,
    "bm25-bm25s": Bm25sBM25,
    "dense": DenseRetriever,
}
FUSIONS: dict[str, type] = {
    "rrf": RRF,
    "weighted": WeightedFusion,
}


def make_retriever(name: str, settings: dict[str, Any]):
    """The retriever configured as ``retrievers.<name>`` in params.yaml."""
    return make(RETRIEVERS, "retriever", name, settings)


def make_fusion(name: str, settings: dict[str, Any]):
    """The fusion configured as ``fusions.<name>`` in params.yaml."""
    return make(FUSIONS, "fusion", name, settings)
