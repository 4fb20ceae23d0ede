"""What every first-stage retriever shares: the interface and exact top-k selection."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from rerank_lab.io.trec import Run, ranked


class Retriever(Protocol):
    """A first-stage retriever: builds an index folder once, then searches it.

    ``index`` is a DVC output of its own (the dense retriever's corpus embeddings, a Lucene
    index), so changing the search depth or the queries never rebuilds it.
    """

    def index(self, doc_ids: list[str], passages: list[str], out: Path) -> None: ...

    def search(self, index: Path, queries: dict[str, str], depth: int) -> Run: ...


def top_k(scores: np.ndarray, doc_ids: np.ndarray, k: int) -> dict[str, float]:
    """The ``k`` best docs in trec_eval's order (score, then doc id descending), exactly: a tie
    across the cut keeps the docs trec_eval would rank first, whatever their array position.

    ``scores`` is ``(n_docs,)``; ``doc_ids`` the matching ids as a numpy string array.

    >>> top_k(np.array([1.0, 3.0, 3.0, 2.0, 3.0]), np.array(["d", "c", "b", "a", "e"]), 2)
    {'e': 3.0, 'c': 3.0}
    """
    k = min(k, len(scores))
    if k <= 0:
        return {}
    kth = np.partition(scores, len(scores) - k)[len(scores) - k]
    cand = np.flatnonzero(scores >= kth)  # every doc tied with the k-th stays a candidate
    return dict(ranked({str(doc_ids[i]): float(scores[i]) for i in cand})[:k])
