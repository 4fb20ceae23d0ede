"""teacher-score: first-stage and cross-encoder teachers, stacked columns, stale columns replaced."""

from __future__ import annotations

import re

import datasets
import numpy as np
import pytest

from rerank_lab.errors import ConfigError, InputError
from rerank_lab.io.datasets import load_dataset, save_dataset
from rerank_lab.schema import TEACHER_FEATURE, to_dataset
from rerank_lab.score_cache import ScoreCache
from rerank_lab.teacher import CrossEncoderTeacher, FirstStageTeacher, add_teacher_scores, make_teacher
from tests.conftest import MINILM_MAX_LENGTH
from tests.mine_world import QUERIES, World, row, text, write_world

# Mined-looking rows: d29 and d28 are texts the bm25 run never retrieved.
TRAIN = [row("q1", ["d00", "d10", "d29"], [1, 0, 0]), row("q2", ["d01", "d02"], [1, 0]), row("q3", ["d04"], [1])]
VALIDATION = [row("v1", ["d06", "d28"], [1, 0])]
# the bm25 run's scores (tests/mine_world.py), -1.0 where the run lacks the doc
BM25 = {"train": [[20.0, 19.0, -1.0], [10.0, 9.0], [2.0]], "validation": [[4.0, -1.0]]}


def _dd() -> datasets.DatasetDict:
    return datasets.DatasetDict({"train": to_dataset(TRAIN), "validation": to_dataset(VALIDATION)})


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return write_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def stacked(world) -> datasets.DatasetDict:
    """Three teachers at once; the cross-encoder loads the model itself, like `rerank-lab teacher-score`."""
    teachers = {
        "bm25": FirstStageTeacher("bm25", missing=-1.0),
        "bm25_zero": FirstStageTeacher("bm25"),
        "minilm": CrossEncoderTeacher("all-MiniLM-L6-v2", max_length=MINILM_MAX_LENGTH, dtype="float32"),
    }
    return add_teacher_scores(_dd(), teachers, world.runs, ScoreCache(None))


def test_first_stage_scores_are_the_runs_scores(stacked):
    for split, want in BM25.items():
        assert stacked[split]["teacher_scores.bm25"] == want


def test_first_stage_missing_defaults_to_zero(stacked):
    assert stacked["train"]["teacher_scores.bm25_zero"] == [[20.0, 19.0, 0.0], [10.0, 9.0], [2.0]]
    assert stacked["validation"]["teacher_scores.bm25_zero"] == [[4.0, 0.0]]


def test_cross_encoder_scores_equal_pair_scorer_scores(stacked, minilm_scorer_factory):
    scorer = minilm_scorer_factory()
    for split, rows in (("train", TRAIN), ("validation", VALIDATION)):
        got = stacked[split]["teacher_scores.minilm"]
        assert [len(g) for g in got] == [len(r["texts"]) for r in rows]
        for values, r in zip(got, rows):
            want = scorer.score([(QUERIES[r["id"]], text(d)) for d in r["text_ids"]])
            np.testing.assert_allclose(values, want.astype(np.float32), rtol=1e-4, atol=1e-5)


def test_teachers_stack_as_separate_columns(stacked):
    for split in ("train", "validation"):
        ds = stacked[split]
        assert ds.column_names == [
            "id",
            "query",
            "texts",
            "text_ids",
            "context_spans",
            "labels",
            "teacher_scores.bm25",
            "teacher_scores.bm25_zero",
            "teacher_scores.minilm",
        ]
        assert all(ds.features[c] == TEACHER_FEATURE for c in ds.column_names if c.startswith("teacher_scores."))
        assert ds.select_columns(["id", "texts", "labels"]).to_list() == _dd()[split].select_columns(["id", "texts", "labels"]).to_list()


def test_stacked_columns_round_trip_through_the_schema(stacked, tmp_path):
    save_dataset(stacked, tmp_path / "scored")  # validates every row, teacher columns included
    back = load_dataset(tmp_path / "scored")
    for split in ("train", "validation"):
        assert back[split].features == stacked[split].features
        assert back[split].to_list() == stacked[split].to_list()


def test_rerunning_replaces_a_stale_column(world):
    stale = [{**r, "teacher_scores.bm25": [123.0] * len(r["texts"])} for r in TRAIN]
    dd = datasets.DatasetDict({"train": to_dataset(stale)})
    out = add_teacher_scores(dd, {"bm25": FirstStageTeacher("bm25", missing=-1.0)}, world.runs, None)
    assert out["train"].column_names.count("teacher_scores.bm25") == 1
    assert out["train"]["teacher_scores.bm25"] == BM25["train"]
    again = add_teacher_scores(out, {"bm25": FirstStageTeacher("bm25", missing=-7.0)}, world.runs, None)
    assert again["train"]["teacher_scores.bm25"] == [[20.0, 19.0, -7.0], [10.0, 9.0], [2.0]]
    assert again["train"].column_names == out["train"].column_names


def test_first_stage_needs_runs():
    with pytest.raises(InputError, match=r"teacher run 'bm25' needs --runs \(fix: pass the folder of first-stage runs\)"):
        add_teacher_scores(_dd(), {"bm25": FirstStageTeacher("bm25")}, None, None)


def test_first_stage_missing_run_file(world):
    path = world.runs / "dense" / "train.trec"
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: file not found"):
        add_teacher_scores(_dd(), {"dense": FirstStageTeacher("dense")}, world.runs, None)


def test_make_teacher():
    assert make_teacher("bm25", {"type": "first-stage", "run": "bm25", "missing": -1}) == FirstStageTeacher("bm25", -1)
    assert make_teacher("ce", {"type": "cross-encoder", "max_length": 128}) == CrossEncoderTeacher(max_length=128)
    with pytest.raises(ConfigError, match=r"^teachers\.x\.type: unknown teacher type, got .llm. \(fix: use one of: cross-encoder, first"):
        make_teacher("x", {"type": "llm"})
