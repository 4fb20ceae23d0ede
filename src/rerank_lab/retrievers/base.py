"""What every first-stage retriever shares: the interface and exact top-k selection."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from rerank_lab.errors import InputError
from rerank_lab.io.trec import Run, ranked

Scope = dict[str, list[str]]  # per query id: the only doc ids it may retrieve (sentence mode)


class Retriever(Protocol):
    """A first-stage retriever: builds an index folder once, then searches it.

    ``index`` is a DVC output of its own (the dense retriever's corpus embeddings, a Lucene
    index), so changing the search depth or the queries never rebuilds it. With a ``scope`` a
    query ranks only its own candidates (corpus statistics still come from the whole index).
    """

    def index(self, doc_ids: list[str], passages: list[str], out: Path) -> None: ...

    def search(self, index: Path, queries: dict[str, str], depth: int, scope: Scope | None = None) -> Run: ...


def scoped_top_k(scores: np.ndarray, doc_ids: np.ndarray, k: int, allowed: np.ndarray | None) -> dict[str, float]:
    """:func:`top_k` over the docs at positions ``allowed`` only (all of them when ``None``).

    >>> scoped_top_k(np.array([5.0, 1.0, 3.0, 2.0]), np.array(["a", "b", "c", "d"]), 2, np.array([1, 2, 3]))
    {'c': 3.0, 'd': 2.0}
    """
    if allowed is None:
        return top_k(scores, doc_ids, k)
    return top_k(scores[allowed], doc_ids[allowed], k)


def scope_positions(doc_ids: np.ndarray, scope: Scope | None, qids: list[str], where: str) -> dict[str, np.ndarray | None]:
    """Each query's allowed positions in ``doc_ids`` (``None`` for all); a scoped doc id missing
    from the index is an error naming it."""
    if scope is None:
        return dict.fromkeys(qids)
    position = {d: i for i, d in enumerate(doc_ids.tolist())}
    out: dict[str, np.ndarray | None] = {}
    for qid in qids:
        missing = [d for d in scope.get(qid, []) if d not in position]
        if missing:
            raise InputError(
                f"query {qid}'s candidate {missing[0]!r} is not in the index",
                path=where,
                fix="index the corpus that convert wrote with the dataset",
            )
        out[qid] = np.array(sorted(position[d] for d in scope.get(qid, [])), dtype=np.int64)
    return out


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
