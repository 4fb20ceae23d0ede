"""``train.max_positives_per_query``: a query gives one example (list, group, set of pairs) per
judged positive, so a BEIR query judging dozens of documents (NFCorpus: ~58) made dozens of lists
and ``max_queries`` did not bound the training set. The cap keeps the highest-graded positives."""

from __future__ import annotations

import pytest

from rerank_lab.errors import ConfigError
from rerank_lab.schema import to_dataset
from rerank_lab.train import TrainConfig, build_examples
from tests.test_train import _cfg, _row

# q "m": five positives m0..m4 (graded 1, 2, 1, 2, 1), two negatives m5, m6
MANY = _row("m", "qm", [f"m{i}" for i in range(7)], [1, 1, 1, 1, 1, 0, 0])
GRADES = {"m": {"m-0": 1, "m-1": 2, "m-2": 1, "m-3": 2, "m-4": 1}}
OTHER = _row("o", "qo", ["o0", "o1", "o2"], [1, 0, 0])


@pytest.mark.parametrize(("fmt", "per_positive"), [("lists", 1), ("groups", 1), ("pairs", None)])
def test_max_queries_times_the_cap_bounds_the_training_set(fmt, per_positive):
    ds = to_dataset([MANY, OTHER])
    every = build_examples(ds, fmt, _cfg())
    capped = build_examples(ds, fmt, _cfg(max_positives_per_query=2))
    if per_positive:  # one example per anchoring positive: 5 + 1 uncapped, 2 + 1 capped
        assert (len(every), len(capped)) == (6, 3)
    else:  # pointwise: the anchoring positives and the negatives, as pairs
        assert (len(every), len(capped)) == (7 + 3, 4 + 3)
    assert len(build_examples(ds, fmt, _cfg(max_queries=1, max_positives_per_query=1))) == (1 if per_positive else 3)


def test_the_cap_keeps_the_highest_graded_positives():
    lists = build_examples(to_dataset([MANY]), "lists", _cfg(gains="graded", max_positives_per_query=2), qrels=GRADES)
    # the two grade-2 positives anchor, in row order; each list still holds a lower-graded positive
    assert [docs[0] for docs in lists["docs"]] == ["m1", "m3"]
    assert [labels[:2] for labels in lists["labels"]] == [[2.0, 1.0], [2.0, 1.0]]


def test_ties_are_broken_by_the_seed_and_repeat():
    one = build_examples(to_dataset([MANY]), "lists", _cfg(max_positives_per_query=3))
    again = build_examples(to_dataset([MANY]), "lists", _cfg(max_positives_per_query=3))
    assert one.to_list() == again.to_list()
    runs = [build_examples(to_dataset([MANY]), "lists", _cfg(max_positives_per_query=3, seed=s)) for s in range(8)]
    chosen = {tuple(docs[0] for docs in run["docs"]) for run in runs}
    assert len(chosen) > 1  # binary gains: every positive ties, the seed picks which three


def test_a_cap_at_or_above_the_positives_changes_nothing():
    ds = to_dataset([MANY, OTHER])
    assert build_examples(ds, "lists", _cfg(max_positives_per_query=5)).to_list() == build_examples(ds, "lists", _cfg()).to_list()


def test_the_cap_is_a_whole_number_of_at_least_one():
    with pytest.raises(ConfigError, match=r"^train\.max_positives_per_query: "):
        TrainConfig(max_positives_per_query=0)
