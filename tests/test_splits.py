"""splits: query groups by shared judged documents, carving whole groups, and the overlap count."""

from __future__ import annotations

import pytest

from rerank_lab.splits import carve_split, query_groups, sharing_with

# Families: {a, b, c} through d1 and d2 (b judges d1 with grade 0: judged all the same), {e, f}
# through d5, and singletons g, h, i, j.
QRELS = {
    "a": {"d1": 1},
    "b": {"d1": 0, "d2": 1},
    "c": {"d2": 1, "d3": 1},
    "e": {"d5": 1},
    "f": {"d5": 2},
    "g": {"d6": 1},
    "h": {"d7": 1},
    "i": {"d8": 1},
}
IDS = ["a", "b", "c", "e", "f", "g", "h", "i", "j"]  # j is judged nowhere: a group of its own


def test_groups_are_the_connected_components():
    assert query_groups(IDS, QRELS) == [["a", "b", "c"], ["e", "f"], ["g"], ["h"], ["i"], ["j"]]
    assert query_groups(list(reversed(IDS)), QRELS) == query_groups(IDS, QRELS)


def test_a_chain_joins_queries_that_share_nothing_directly():
    chain = {"x": {"d1": 1}, "y": {"d1": 1, "d2": 1}, "z": {"d2": 1}}
    assert query_groups(["z", "x", "y"], chain) == [["x", "y", "z"]]


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("fraction", [0.2, 0.3, 0.5])
def test_carving_never_splits_a_group(seed, fraction):
    chosen = carve_split(IDS, fraction, 5000, seed, QRELS)
    for group in query_groups(IDS, QRELS):
        assert set(group) <= chosen or not set(group) & chosen, (group, chosen)
    rest = [q for q in IDS if q not in chosen]
    assert sharing_with(sorted(chosen), rest, QRELS) == 0
    assert 1 <= len(chosen) <= round(fraction * len(IDS))


def test_carving_fills_the_target_when_groups_allow_it():
    # 9 queries, target 3: some seeds take {a, b, c}, others three singletons or {e, f} + one
    sizes = {len(carve_split(IDS, 0.34, 5000, seed, QRELS)) for seed in range(30)}
    assert sizes == {3}


def test_carving_is_seeded():
    assert carve_split(IDS, 0.3, 5000, 7, QRELS) == carve_split(IDS, 0.3, 5000, 7, QRELS)
    assert len({frozenset(carve_split(IDS, 0.3, 5000, s, QRELS)) for s in range(10)}) > 1


def test_without_qrels_every_query_is_its_own_group():
    assert len(carve_split([f"q{i}" for i in range(1000)], 0.01, 5000, seed=0)) == 10


def test_sharing_counts_queries_not_documents():
    assert sharing_with(["a", "e", "j"], ["b", "f"], QRELS) == 2  # a via d1, e via d5; j judges nothing
    assert sharing_with(["g"], ["a", "b", "c", "e", "f"], QRELS) == 0
