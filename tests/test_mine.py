"""mine(): negatives appended to the dataset, seeded and byte-reproducible, with its input checks."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import datasets
import pytest

from rerank_lab.errors import ConfigError, InputError
from rerank_lab.io.datasets import load_dataset, save_dataset
from rerank_lab.io.trec import write_run
from rerank_lab.mine import MineConfig, mine
from rerank_lab.miners import IterativeHardMiner, MixedMiner, RandomMiner, RetrieverHardMiner, make_miner
from rerank_lab.schema import to_dataset
from tests.mine_world import DOCS, RELEVANT, RUNS, TRAIN_ROWS, VALIDATION_ROWS, World, dataset, row, text, write_world

ORIGINAL = {r["id"]: r for r in TRAIN_ROWS + VALIDATION_ROWS}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return write_world(tmp_path_factory.mktemp("world"))


def _mine(world: World, miner, dd=None, **cfg):
    return mine(dd if dd is not None else dataset(), miner, MineConfig(**cfg), world.corpus, world.qrels, world.runs)


def _mined_ids(dd: datasets.DatasetDict) -> dict[str, list[str]]:
    """query id -> the text ids mine appended."""
    return {r["id"]: r["text_ids"][len(ORIGINAL[r["id"]]["text_ids"]) :] for split in dd for r in dd[split]}


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_top_hard_negatives_by_hand(world):
    out, metrics = _mine(world, RetrieverHardMiner("bm25", 0, 5, "top"), num_negatives=3)
    assert _mined_ids(out) == {
        "q1": ["d10", "d11", "d07"],  # ranks 1..5: d00 (pos), d10, d05 (qrels), d11, d07 (grade 0)
        "q2": ["d20", "d21"],  # ranks 1..5: d01 (pos), d02 (own text), d03 (qrels), d20, d21
        "q3": ["d24", "d25"],  # the run holds 4 docs; d08 (qrels) and d04 (pos) are excluded
        "v1": ["d26", "d27"],  # d09 (validation qrels), d06 (pos)
    }
    assert metrics == {
        "train_rows": 3,
        "train_negatives": 3 + 3 + 2,  # q2 already had d02
        "train_rows_short_of_negatives": 2,
        "validation_rows": 1,
        "validation_negatives": 2,
        "validation_rows_short_of_negatives": 1,
    }


def test_negatives_are_appended_with_label_0_and_their_corpus_spans(world):
    out, _ = _mine(world, MixedMiner("bm25", 0.5, 0, 12), num_negatives=4, seed=1)
    for split in ("train", "validation"):
        for got in out[split]:
            before = ORIGINAL[got["id"]]
            n = len(before["texts"])
            per_text = [k for k in before if k not in ("id", "query")]
            assert {k: got[k][:n] for k in per_text} == {k: before[k] for k in per_text}  # the original texts, untouched
            assert len(got["texts"]) == n + 4
            new = got["text_ids"][n:]
            assert got["labels"][n:] == [0, 0, 0, 0]
            assert got["texts"][n:] == [text(d) for d in new]
            assert got["context_spans"][n:] == [DOCS[d]["context_spans"] for d in new]
            assert not set(new) & (RELEVANT[got["id"]] | set(before["text_ids"]))
    assert out["train"].features == dataset()["train"].features


def test_same_seed_gives_byte_identical_output(world, tmp_path):
    miner = MixedMiner("bm25", 0.5, 1, 12)
    first, m1 = _mine(world, miner, num_negatives=5, seed=11)
    second, m2 = _mine(world, miner, num_negatives=5, seed=11)
    save_dataset(first, tmp_path / "a")
    save_dataset(second, tmp_path / "b")
    a, b = _folder_bytes(tmp_path / "a"), _folder_bytes(tmp_path / "b")
    assert sorted(a) == sorted(b) and any(name.endswith(".arrow") for name in a)
    assert a == b
    assert m1 == m2


def test_different_seed_gives_different_negatives(world):
    miner = MixedMiner("bm25", 0.5, 1, 12)
    one, _ = _mine(world, miner, num_negatives=5, seed=11)
    two, _ = _mine(world, miner, num_negatives=5, seed=12)
    assert _mined_ids(one) != _mined_ids(two)


def test_row_order_does_not_change_a_rows_negatives(world):
    forward, _ = _mine(world, RandomMiner(), num_negatives=4)
    backward_dd = datasets.DatasetDict({"train": to_dataset(TRAIN_ROWS[::-1]), "validation": to_dataset(VALIDATION_ROWS)})
    backward, _ = _mine(world, RandomMiner(), dd=backward_dd, num_negatives=4)
    assert _mined_ids(forward) == _mined_ids(backward)


def test_random_mine_never_picks_relevant_docs(world):
    for seed in range(15):
        out, metrics = _mine(world, RandomMiner(), num_negatives=20, seed=seed)
        for qid, new in _mined_ids(out).items():
            assert len(new) == 20 == len(set(new))
            assert not set(new) & (RELEVANT[qid] | set(ORIGINAL[qid]["text_ids"]))
        assert metrics["train_rows_short_of_negatives"] == 0


def test_context_spans_relevance_gets_zeros(world, tmp_path):
    out, _ = _mine(world, RetrieverHardMiner("bm25", 0, 5, "top"), dd=dataset(relevance=True), num_negatives=3)
    q1 = out["train"][0]
    # d00 (pos) has 3 spans (title + 2 sentences); d10, d11, d07 have 3 each too
    assert q1["context_spans_relevance"] == [[1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]
    for r in out["train"]:
        assert [len(x) for x in r["context_spans_relevance"]] == [len(s) for s in r["context_spans"]]
    save_dataset(out, tmp_path / "mined")  # still valid against the schema
    assert load_dataset(tmp_path / "mined")["train"][0] == q1


def test_only_configured_splits_are_mined(world):
    out, metrics = _mine(world, RandomMiner(), num_negatives=2, splits=("train", "test"))
    assert out["validation"].to_list() == dataset()["validation"].to_list()
    assert set(metrics) == {"train_rows", "train_negatives", "train_rows_short_of_negatives"}  # no test split: skipped


def test_without_qrels_only_labels_count_as_relevant(world, tmp_path):
    root = tmp_path / "world"
    shutil.copytree(world.corpus.parent, root)
    (root / "qrels" / "validation.tsv").unlink()
    bare = World(root / "corpus", root / "qrels", root / "runs")
    out, _ = _mine(bare, RetrieverHardMiner("bm25", 0, 5, "top"), num_negatives=3)
    assert _mined_ids(out)["v1"] == ["d09", "d26", "d27"]  # d09 is no longer known to be relevant


def test_iterative_miner_through_mine(world, minilm_scorer_factory):
    miner = IterativeHardMiner(model="minilm", run="bm25", range_min=0, range_max=12, max_length=64)
    scorer = minilm_scorer_factory()
    cfg = MineConfig(num_negatives=2, splits=("train",))
    out, _ = mine(dataset(), miner, cfg, world.corpus, world.qrels, world.runs, {"minilm": scorer})
    for qid, new in _mined_ids(out).items():
        if qid == "v1":
            continue
        cands = [d for d in RUNS["train"][qid] if d not in RELEVANT[qid] | set(ORIGINAL[qid]["text_ids"])]
        scores = dict(zip(cands, scorer.score([(ORIGINAL[qid]["query"], text(d)) for d in cands]).tolist()))
        assert new == sorted(cands, key=lambda d: (-scores[d], d))[:2]


def test_run_naming_a_query_the_split_lacks(world, tmp_path):
    root = tmp_path / "runs"
    write_run({**RUNS["train"], "qX": {"d10": 1.0}}, root / "bm25" / "train.trec", tag="bm25")
    write_run(RUNS["validation"], root / "bm25" / "validation.trec", tag="bm25")
    path = root / "bm25" / "train.trec"
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: query qX: run names query 'qX', which the train split lacks"):
        mine(dataset(), RetrieverHardMiner("bm25", 0, 5), MineConfig(), world.corpus, world.qrels, root)


def test_missing_run_file(world, tmp_path):
    with pytest.raises(InputError, match=rf"{re.escape(str(tmp_path / 'bm25' / 'train.trec'))}: no train run for 'bm25'"):
        mine(dataset(), RetrieverHardMiner("bm25", 0, 5), MineConfig(), world.corpus, world.qrels, tmp_path)


def test_random_miner_needs_no_run(world, tmp_path):
    out, _ = mine(dataset(), RandomMiner(), MineConfig(num_negatives=1), world.corpus, world.qrels, tmp_path / "nothing-here")
    assert all(len(v) == 1 for v in _mined_ids(out).values())


def test_teacher_columns_must_come_after_mining(world):
    rows = [{**r, "teacher_scores.bm25": [1.0] * len(r["texts"])} for r in TRAIN_ROWS]
    dd = datasets.DatasetDict({"train": to_dataset(rows)})
    with pytest.raises(InputError, match=r"split train already has teacher columns \['teacher_scores\.bm25'\].*teacher-score after"):
        _mine(world, RandomMiner(), dd=dd)


def test_make_miner_builds_each_type():
    assert make_miner("hard", {"type": "retriever-hard", "range_min": 0, "range_max": 5, "sampling": "top"}) == RetrieverHardMiner(
        "bm25", 0, 5, "top"
    )
    assert make_miner("n0", {"type": "random"}) == RandomMiner()
    assert make_miner("n3", {"type": "mixed", "hard_ratio": 0.25}) == MixedMiner(hard_ratio=0.25)
    assert make_miner("n2", {"type": "iterative-hard", "model": "models/x"}) == IterativeHardMiner(model="models/x")


def test_make_miner_unknown_type_lists_valid_types():
    expected = r"^miners\.n1\.type: unknown miner type, got 'bm25' \(fix: use one of: iterative-hard, mixed, random, retriever-hard\)$"
    with pytest.raises(ConfigError, match=expected):
        make_miner("n1", {"type": "bm25"})


def test_make_miner_errors():
    with pytest.raises(ConfigError, match=r"^miners\.n1\.type: missing"):
        make_miner("n1", {"run": "bm25"})
    with pytest.raises(ConfigError, match=r"^miners\.n1\.depth: unknown key"):
        make_miner("n1", {"type": "retriever-hard", "depth": 3})
    with pytest.raises(ConfigError, match=r"^miners\.n3\.hard_ratio: must be in \[0, 1\], got 2"):
        make_miner("n3", {"type": "mixed", "hard_ratio": 2})


def test_num_negatives_must_be_positive():
    with pytest.raises(ConfigError, match=r"^mine\.num_negatives: must be >= 1, got 0"):
        MineConfig(num_negatives=0)


def test_row_helper_matches_the_corpus():
    r = row("q2", ["d01", "d02"], [1, 0])
    assert r["texts"][1].startswith("Antibodies ") and r["context_spans"][1][0] == [0, len("Antibodies")]
