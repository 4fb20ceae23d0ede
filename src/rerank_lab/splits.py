"""Carving missing splits from train without leaks, and measuring what splits share.

Queries that share a judged document are not independent: SciFact's claims come in families
written from one citation (negations included) that cite the same abstracts, so a claim carved
into validation while its sibling stays in train lets the model see the answer. Splits are
therefore carved by *group*: the connected components of the graph whose edges join two queries
judging the same document (any grade, judged-0 included).
"""

from __future__ import annotations

import random

from rerank_lab.io.qrels import Qrels


def query_groups(ids: list[str], qrels: Qrels) -> list[list[str]]:
    """Connected components of ``ids`` linked by a shared judged document, each sorted, in order
    of their first id (so the result does not depend on the order of ``ids``).

    >>> query_groups(["q3", "q1", "q2", "q4"], {"q1": {"d1": 1}, "q2": {"d1": 0, "d2": 1}, "q3": {"d2": 1}, "q4": {"d9": 1}})
    [['q1', 'q2', 'q3'], ['q4']]
    """
    parent = {q: q for q in ids}

    def root(q: str) -> str:
        while parent[q] != q:
            parent[q] = parent[parent[q]]
            q = parent[q]
        return q

    first_judge: dict[str, str] = {}
    for q in sorted(ids):
        for d in sorted(qrels.get(q, {})):
            if d in first_judge:
                a, b = root(q), root(first_judge[d])
                parent[max(a, b)] = min(a, b)
            else:
                first_judge[d] = q
    groups: dict[str, list[str]] = {}
    for q in sorted(ids):
        groups.setdefault(root(q), []).append(q)
    return sorted(groups.values())


def carve_split(ids: list[str], fraction: float, maximum: int, seed: int, qrels: Qrels | None = None) -> set[str]:
    """A seeded sample of whole query groups holding ``fraction`` of ``ids`` (at least 1 query, at
    most ``maximum``, never all): groups are taken in a seeded order while they fit, so the
    sample can fall a little short of the target rather than split a group.

    >>> ids = [f"q{i}" for i in range(10)]
    >>> carve_split(ids, 0.2, 5000, seed=1) == carve_split(list(reversed(ids)), 0.2, 5000, seed=1)
    True
    >>> len(carve_split([f"q{i}" for i in range(1000)], 0.01, 5000, seed=0))
    10
    >>> sorted(carve_split(["a", "b", "c"], 0.34, 5000, seed=0, qrels={"a": {"d": 1}, "b": {"d": 1}}))  # one query: c, not half of a+b
    ['c']
    """
    if fraction <= 0 or len(ids) < 2:
        return set()
    target = min(maximum, max(1, round(fraction * len(ids))), len(ids) - 1)
    groups = query_groups(ids, qrels or {})
    random.Random(seed).shuffle(groups)
    chosen: list[str] = []
    for group in groups:
        if len(chosen) + len(group) <= target:
            chosen += group
            if len(chosen) == target:
                break
    return set(chosen)


def sharing_with(ids: list[str], others: list[str], qrels: Qrels) -> int:
    """How many of ``ids`` judge a document that one of ``others`` judges too (0: independent).

    >>> sharing_with(["v1", "v2"], ["t1"], {"v1": {"d1": 0}, "v2": {"d2": 1}, "t1": {"d1": 1}})
    1
    """
    judged = {d for q in others for d in qrels.get(q, {})}
    return sum(1 for q in ids if judged & set(qrels.get(q, {})))
