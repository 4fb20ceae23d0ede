"""Negative miners: one strategy per file, one registry entry each (``miners.<name>.type``)."""

from __future__ import annotations

from typing import Any

from rerank_lab.miners.iterative_hard import IterativeHardMiner
from rerank_lab.miners.mixed import MixedMiner
from rerank_lab.miners.random_negatives import RandomMiner
from rerank_lab.miners.retriever_hard import RetrieverHardMiner
from rerank_lab.registry import make

MINERS: dict[str, type] = {
    "random": RandomMiner,  # N0
    "retriever-hard": RetrieverHardMiner,  # N1
    "iterative-hard": IterativeHardMiner,  # N2
    "mixed": MixedMiner,  # N3
}


def make_miner(name: str, settings: dict[str, Any]):
    """The miner configured as ``miners.<name>`` in params.yaml."""
    return make(MINERS, "miner", name, settings)
