"""The four negative miners on the tiny world of tests/mine_world.py (see its docstring for the run)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from rerank_lab.errors import ConfigError
from rerank_lab.miners import IterativeHardMiner, MixedMiner, RandomMiner, RetrieverHardMiner
from rerank_lab.miners.base import MineContext, row_rng
from rerank_lab.miners.retriever_hard import margin_filter
from tests.mine_world import DOC_IDS, DOCS, QUERIES, TRAIN_ROWS, context, row, text, write_world

Q1, Q2, Q3 = TRAIN_ROWS  # own texts: q1 d00; q2 d01 (pos), d02 (neg); q3 d04
EXCLUDED = {"q1": {"d00", "d05"}, "q2": {"d01", "d02", "d03"}, "q3": {"d04", "d08"}}
# q1, ranks 2..8 of the run without d05 (relevant, rank 3)
Q1_RANKS_2_TO_8 = ["d10", "d11", "d07", "d12", "d13", "d14"]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory) -> MineContext:
    return context(write_world(tmp_path_factory.mktemp("world")))


# --- N0 random ---------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [Q1, Q2, Q3], ids=lambda r: r["id"])
def test_random_never_returns_relevant_or_own_texts(ctx, source):
    qid = source["id"]
    assert ctx.excluded(source) == EXCLUDED[qid]
    for seed in range(40):
        negs = RandomMiner().negatives(ctx, source, 8, row_rng(seed, qid))
        assert len(negs) == 8 == len(set(negs))
        assert not set(negs) & EXCLUDED[qid]


def test_random_takes_every_allowed_doc_when_k_equals_what_is_left(ctx):
    # 30 docs - 3 excluded = 27: the rejection sampler runs out and the full scan finishes the job
    negs = RandomMiner().negatives(ctx, Q2, 27, random.Random(0))
    assert sorted(negs) == sorted(set(DOC_IDS) - EXCLUDED["q2"])


def test_random_returns_what_exists_when_k_exceeds_the_corpus(ctx):
    assert sorted(RandomMiner().negatives(ctx, Q2, 100, random.Random(0))) == sorted(set(DOC_IDS) - EXCLUDED["q2"])
    small = MineContext({d: DOCS[d] for d in ("d00", "d01", "d02", "d03")}, ["d00", "d01", "d02", "d03"], {}, {"q1": {"d00"}})
    assert sorted(RandomMiner().negatives(small, Q1, 5, random.Random(0))) == ["d01", "d02", "d03"]
    assert RandomMiner().negatives(small, Q1, 0, random.Random(0)) == []


def test_random_honours_extra_exclusions(ctx):
    extra = set(DOC_IDS[10:])
    for seed in range(10):
        negs = RandomMiner().negatives(ctx, Q1, 8, random.Random(seed), exclude=extra)
        assert sorted(negs) == ["d01", "d02", "d03", "d04", "d06", "d07", "d08", "d09"]  # d00, d05 excluded


def test_random_is_seeded_per_query(ctx):
    a = RandomMiner().negatives(ctx, Q1, 6, row_rng(3, "q1"))
    assert a == RandomMiner().negatives(ctx, Q1, 6, row_rng(3, "q1"))
    assert a != RandomMiner().negatives(ctx, Q1, 6, row_rng(4, "q1"))


# --- N1 retriever-hard ---------------------------------------------------------------------------


def test_hard_top_takes_the_range_in_rank_order(ctx):
    miner = RetrieverHardMiner("bm25", range_min=1, range_max=8, sampling="top")
    assert miner.negatives(ctx, Q1, 3, random.Random(0)) == ["d10", "d11", "d07"]  # d07: judged, grade 0
    assert miner.negatives(ctx, Q1, 100, random.Random(0)) == Q1_RANKS_2_TO_8  # count: what the range holds


def test_hard_range_bounds(ctx):
    # ranks 4..6 = d11, d07, d12 (rank 3, d05, is relevant and outside anyway)
    assert RetrieverHardMiner("bm25", 3, 6, "top").negatives(ctx, Q1, 10, random.Random(0)) == ["d11", "d07", "d12"]
    # ranks 9..12: the bottom of the run
    assert RetrieverHardMiner("bm25", 8, 12, "top").negatives(ctx, Q1, 10, random.Random(0)) == ["d15", "d16", "d17", "d18"]
    # a range past the end of the run is empty
    assert RetrieverHardMiner("bm25", 12, 20, "top").negatives(ctx, Q1, 10, random.Random(0)) == []


@pytest.mark.parametrize(
    "source, expected",
    [
        (Q1, ["d10", "d11", "d07", "d12", "d13", "d14", "d15", "d16", "d17", "d18"]),  # d00 rank 1, d05 rank 3
        (Q2, ["d20", "d21", "d22"]),  # d01 (pos), d02 (own negative), d03 (qrels) are ranks 1-3
        (Q3, ["d24", "d25"]),  # d08 (qrels) rank 1, d04 (pos) rank 3
    ],
    ids=["q1", "q2", "q3"],
)
def test_hard_never_returns_relevant_docs(ctx, source, expected):
    miner = RetrieverHardMiner("bm25", range_min=0, range_max=50, sampling="top")
    assert miner.negatives(ctx, source, 100, random.Random(0)) == expected
    for seed in range(20):
        negs = RetrieverHardMiner("bm25", 0, 50, "random").negatives(ctx, source, 2, random.Random(seed))
        assert len(negs) == 2 and set(negs) <= set(expected)


def test_hard_random_sampling_stays_inside_the_range(ctx):
    miner = RetrieverHardMiner("bm25", range_min=1, range_max=8, sampling="random")
    seen = set()
    for seed in range(50):
        negs = miner.negatives(ctx, Q1, 3, random.Random(seed))
        assert len(negs) == 3 == len(set(negs))
        seen |= set(negs)
    assert seen == set(Q1_RANKS_2_TO_8)


# q1: the positives' run scores are d00 20 and d05 18, so the positive score is min = 18.
@pytest.mark.parametrize(
    "absolute, relative, expected",
    [
        (None, None, ["d10", "d11", "d07"]),
        (2.5, None, ["d12", "d13", "d14"]),  # keep score <= 18 - 2.5 = 15.5
        (None, 0.25, ["d14", "d15", "d16"]),  # keep score <= 18 * 0.75 = 13.5
        (2.5, 0.2, ["d13", "d14", "d15"]),  # <= 15.5 and <= 14.4
        (1.5, 0.25, ["d14", "d15", "d16"]),  # <= 16.5 and <= 13.5
        (0.0, None, ["d11", "d07", "d12"]),  # d10 (19) scores above the relevant d05 (18)
        (10.0, None, []),  # <= 8: nothing in the run is that low
    ],
)
def test_hard_margins(ctx, absolute, relative, expected):
    miner = RetrieverHardMiner("bm25", 0, 12, "top", absolute_margin=absolute, relative_margin=relative)
    assert miner.positive_score(ctx, Q1) == 18.0
    assert miner.negatives(ctx, Q1, 3, random.Random(0)) == expected


def test_margin_filter_without_a_positive_score_keeps_everything():
    cands = [("a", 9.0), ("b", 5.0)]
    assert margin_filter(cands, None, absolute=1.0, relative=0.5) == cands
    assert margin_filter(cands, 10.0, absolute=None, relative=0.5) == [("b", 5.0)]  # <= 5.0 stays


def test_hard_counts(ctx):
    miner = RetrieverHardMiner("bm25", 1, 8, "random")
    assert [len(miner.negatives(ctx, Q1, k, random.Random(1))) for k in (0, 1, 4, 6, 9)] == [0, 1, 4, 6, 6]


def test_hard_query_absent_from_run_gives_nothing(ctx):
    stranger = row("v1", ["d06"], [1])  # not in the train run
    assert RetrieverHardMiner("bm25", 0, 10, "top").negatives(ctx, stranger, 5, random.Random(0)) == []


@pytest.mark.parametrize(
    "lo, hi, expected",
    [
        (5, 5, r"range_max: must be > range_min \(5\), got 5"),
        (6, 2, r"range_max: must be > range_min \(6\), got 2"),
        (-1, 10, r"range_min: must be >= 0, got -1"),
    ],
)
def test_hard_invalid_range(lo, hi, expected):
    with pytest.raises(ConfigError, match=rf"^miners\.<name>\.{expected}"):
        RetrieverHardMiner("bm25", range_min=lo, range_max=hi)


def test_hard_unknown_sampling():
    with pytest.raises(ConfigError, match=r"sampling: unknown value, got 'best' \(fix: use one of: top, random\)$"):
        RetrieverHardMiner("bm25", 0, 10, sampling="best")


# --- N2 iterative-hard (the real MiniLM cross-encoder) --------------------------------------------


@pytest.fixture(scope="module")
def iterative(tmp_path_factory, minilm_scorer_factory):
    """A context whose scorer ``minilm`` is the real model, and an independent scorer to check it."""
    world = write_world(tmp_path_factory.mktemp("world-n2"))
    return context(world, scorers={"minilm": minilm_scorer_factory()}), minilm_scorer_factory()


def _by_model(checker, qid: str, doc_ids: list[str]) -> list[tuple[str, float]]:
    """The candidates rescored by an independent scorer, best first (ties by id, as the miner does)."""
    scores = checker.score([(QUERIES[qid], text(d)) for d in doc_ids]).tolist()
    return sorted(zip(doc_ids, scores), key=lambda x: (-x[1], x[0]))


# q1, ranks 1..12 without d00 and d05
Q1_CANDIDATES = ["d10", "d11", "d07", "d12", "d13", "d14", "d15", "d16", "d17", "d18"]


def test_iterative_returns_the_models_top_k_among_non_relevant(iterative, minilm_scorer_factory):
    ctx, checker = iterative
    ctx = dataclasses.replace(ctx, scorers={"minilm": minilm_scorer_factory()})  # fresh counters
    ranked = _by_model(checker, "q1", Q1_CANDIDATES)
    assert len({s for _, s in ranked}) == 10  # no ties: the order is the model's alone
    miner = IterativeHardMiner(model="minilm", run="bm25", range_min=0, range_max=12)
    assert miner.negatives(ctx, Q1, 3, random.Random(0)) == [d for d, _ in ranked[:3]]
    assert miner.negatives(ctx, Q1, 100, random.Random(0)) == [d for d, _ in ranked]  # all 10, model order
    assert ctx.scorers["minilm"].pairs_scored == 11  # 10 candidates + the positive d00, each scored once


def test_iterative_range_and_exclusions(iterative):
    ctx, checker = iterative
    miner = IterativeHardMiner(model="minilm", run="bm25", range_min=0, range_max=6)
    # ranks 1..6 = d00 (pos), d10, d05 (qrels), d11, d07, d12
    assert miner.negatives(ctx, Q1, 10, random.Random(0)) == [d for d, _ in _by_model(checker, "q1", ["d10", "d11", "d07", "d12"])]
    assert miner.negatives(ctx, Q1, 10, random.Random(0), exclude={"d10", "d11"}) == [
        d for d, _ in _by_model(checker, "q1", ["d07", "d12"])
    ]
    assert IterativeHardMiner(model="minilm", run="bm25", range_min=0, range_max=3).negatives(ctx, Q2, 5, random.Random(0)) == []


def test_iterative_absolute_margin(iterative):
    ctx, checker = iterative
    ranked = _by_model(checker, "q1", Q1_CANDIDATES)
    positive = float(checker.score([(QUERIES["q1"], text("d00"))])[0])
    # a margin that puts the cut half-way between the model's first and second candidate
    margin = positive - (ranked[0][1] + ranked[1][1]) / 2
    miner = IterativeHardMiner(model="minilm", run="bm25", range_min=0, range_max=12, absolute_margin=margin)
    assert miner.negatives(ctx, Q1, 3, random.Random(0)) == [d for d, _ in ranked[1:4]]


def test_iterative_needs_a_model():
    with pytest.raises(ConfigError, match=r"model: is needed: a reranker trained by an earlier train run, got ''"):
        IterativeHardMiner(run="bm25")


def test_iterative_invalid_range():
    with pytest.raises(ConfigError, match=r"range_max: must be > range_min \(10\), got 10"):
        IterativeHardMiner(model="m", range_min=10, range_max=10)


# --- N3 mixed ------------------------------------------------------------------------------------


def test_mixed_half_hard_half_random(ctx):
    miner = MixedMiner("bm25", hard_ratio=0.5, range_min=0, range_max=5)  # q2: ranks 1..5 leave d20, d21
    for seed in range(20):
        negs = miner.negatives(ctx, Q2, 4, random.Random(seed))
        assert len(negs) == 4 == len(set(negs))
        assert set(negs[:2]) == {"d20", "d21"}  # round(4 * 0.5) = 2 hard ones, from the range
        assert not set(negs[2:]) & ({"d20", "d21"} | EXCLUDED["q2"])  # 2 others, random


def test_mixed_hard_part_comes_from_the_range(ctx):
    miner = MixedMiner("bm25", hard_ratio=0.5, range_min=1, range_max=8)
    for seed in range(20):
        negs = miner.negatives(ctx, Q1, 4, random.Random(seed))
        assert len(negs) == 4 == len(set(negs))
        assert set(negs[:2]) <= set(Q1_RANKS_2_TO_8)
        assert not set(negs) & EXCLUDED["q1"]


def test_mixed_fills_a_hard_shortfall_with_random(ctx):
    miner = MixedMiner("bm25", hard_ratio=1.0, range_min=0, range_max=5)  # wants 5 hard, the range has 2
    negs = miner.negatives(ctx, Q2, 5, random.Random(0))
    assert len(negs) == 5 == len(set(negs))
    assert set(negs[:2]) == {"d20", "d21"}
    assert not set(negs[2:]) & ({"d20", "d21"} | EXCLUDED["q2"])


def test_mixed_rounding_and_ratio_bounds(ctx):
    # round(3 * 0.5) = 2 (banker's rounding of 1.5); q2's range holds exactly d20, d21, d22
    negs = MixedMiner("bm25", hard_ratio=0.5, range_min=0, range_max=6).negatives(ctx, Q2, 3, random.Random(0))
    assert set(negs[:2]) <= {"d20", "d21", "d22"}
    # every allowed doc is reachable and nothing relevant ever is
    everything = MixedMiner("bm25", hard_ratio=0.5, range_min=0, range_max=12).negatives(ctx, Q1, 40, random.Random(0))
    assert sorted(everything) == sorted(set(DOC_IDS) - EXCLUDED["q1"]) and len(everything) == 28


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_mixed_ratio_outside_unit_interval(ratio):
    with pytest.raises(ConfigError, match=rf"hard_ratio: must be in \[0, 1\], got {ratio}"):
        MixedMiner(hard_ratio=ratio)
