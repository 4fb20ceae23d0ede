"""Sentence mode end to end: `dvc repro` of every stage on the tiny SciFact subset with
`task.unit: sentences` (the late-interaction stage once stopped there on a short abstract's row)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rerank_lab.repro import prepare_copy, run_pipeline
from tests.test_pipeline import ROOT, TINY_OVERRIDES, _tiny_rationales


@pytest.mark.slow  # a second whole tiny repro (~5 min): `make test-slow`
def test_sentence_mode_runs_every_stage(tmp_path: Path) -> None:
    raw = _tiny_rationales(tmp_path / "raw" / "tiny")
    overrides = {**TINY_OVERRIDES, "task.unit": "sentences", "miners.mixed.range_min": 0}
    work = prepare_copy(ROOT, tmp_path / "work", overrides, raw={"tiny": raw}, share_cache=False)
    run_pipeline(work)
    evaluated = json.loads((work / "metrics/evaluate/tiny.json").read_text())
    assert {"bm25", "rrf", "bm25+ce", "bm25+ce+tuned", "bm25+tuned", "rrf+tuned"} <= set(evaluated)
    for line in (work / "data/score/tiny/bm25+ce/test.trec").read_text().splitlines():
        assert "#" in line.split()[2]  # candidates are sentences: <doc id>#<k>
    late = json.loads((work / "metrics/train_late/tiny.json").read_text())
    assert late["train_examples"] > 0 and (work / "models/tiny/late-interaction").is_dir()
    assert "test" in json.loads((work / "metrics/label/tiny.json").read_text())
