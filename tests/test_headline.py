"""headline: the seven numbers a researcher compares, copied out of evaluate's and tune's metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rerank_lab import cli
from rerank_lab.errors import ConfigError, InputError
from rerank_lab.headline import HeadlineConfig, configure, headline

EVALUATION = {
    "bm25": {"validation": {"ndcg@10": 0.1}, "test": {"ndcg@10": 0.61, "recall@100": 0.83}},
    "dense": {"test": {"ndcg@10": 0.5, "recall@100": 0.7}},
    "bm25+ce": {"test": {"ndcg@10": 0.64, "recall@100": 0.85, "false_evidence_rate": 1.0}},
    "bm25+ce+tuned": {"test": {"ndcg@10": 0.66, "recall@100": 0.8, "false_evidence_rate": 0.42, "vs_bm25": {"p_randomization": 0.01}}},
}
TUNING = {"best_confirm_ndcg@10": 0.747, "best_select_ndcg@10": 0.87, "first_stage_confirm_ndcg@10": 0.81}


def test_headline_picks_the_systems_named_by_tune_run_and_score_name():
    assert headline(HeadlineConfig("bm25", "ce"), EVALUATION, TUNING) == {
        "dev_confirm_ndcg@10": 0.747,
        "test_ndcg@10_first_stage": 0.61,
        "test_ndcg@10_untuned": 0.64,
        "test_ndcg@10_tuned": 0.66,
        "test_false_evidence_tuned": 0.42,
        "test_recall@100_first_stage": 0.83,
        "test_recall@100_reranker": 0.85,
    }


def test_headline_leaves_out_values_the_inputs_lack():
    ev = {
        k: {"test": {m: v for m, v in e["test"].items() if m not in ("recall@100", "false_evidence_rate")}} for k, e in EVALUATION.items()
    }
    assert sorted(headline(HeadlineConfig("bm25", "ce"), ev, {})) == [
        "test_ndcg@10_first_stage",
        "test_ndcg@10_tuned",
        "test_ndcg@10_untuned",
    ]


def test_headline_refuses_a_system_the_evaluation_lacks():
    with pytest.raises(InputError, match=r"^ev.json: the evaluation has no run 'dense\+ce' \(the untuned\).*evaluated: bm25, bm25\+ce"):
        headline(HeadlineConfig("dense", "ce"), EVALUATION, TUNING, "ev.json")


def test_configure_reads_tune_run_and_score_name():
    assert configure({"tune": {"run": "bm25", "epsilon": 1}, "score": {"name": "mini", "top_k": 20}}) == HeadlineConfig("bm25", "mini")
    with pytest.raises(ConfigError, match=r"score.name must be a run name, got 3"):
        configure({"tune": {"run": "bm25"}, "score": {"name": 3}})
    with pytest.raises(ConfigError, match=r"params has no 'tune.run'"):
        configure({"tune": {}, "score": {"name": "ce"}})


def test_headline_command_writes_the_metrics_file(tmp_path: Path):
    (tmp_path / "ev.json").write_text(json.dumps(EVALUATION))
    (tmp_path / "tune.json").write_text(json.dumps(TUNING))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"tune": {"run": "bm25"}, "score": {"name": "ce"}}))
    args = ["headline", "--params", tmp_path / "params.yaml", "--evaluate", tmp_path / "ev.json", "--tune", tmp_path / "tune.json"]
    args += ["--metrics", tmp_path / "metrics" / "headline" / "toy.json"]
    cli.cli.main([str(a) for a in args], prog_name="rerank-lab", standalone_mode=False)
    out = json.loads((tmp_path / "metrics" / "headline" / "toy.json").read_text())
    assert out == headline(HeadlineConfig("bm25", "ce"), EVALUATION, TUNING)
    assert len(out) == 7 and list(out) == sorted(out)  # flat, sorted keys: seven columns in dvc exp show


def test_a_dataset_tune_did_not_tune_has_no_tuned_numbers() -> None:
    # ArguAna evaluated zero-shot: no dev queries, so tune wrote no tuned run (tuned: false)
    from rerank_lab.headline import HeadlineConfig, headline

    ev = {"bm25": {"test": {"ndcg@10": 0.4, "recall@100": 0.9}}, "bm25+ce": {"test": {"ndcg@10": 0.3, "recall@100": 0.9}}}
    assert headline(HeadlineConfig("bm25", "ce"), ev, {"tuned": False, "dev_queries": 0}) == {
        "test_ndcg@10_first_stage": 0.4,
        "test_ndcg@10_untuned": 0.3,
        "test_recall@100_first_stage": 0.9,
        "test_recall@100_reranker": 0.9,
    }
