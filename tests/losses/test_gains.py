"""Graded gains (``train.gains``): list-format losses train on the qrels grades of the positives,
pointwise formats keep 0/1, the dataset's labels stay 0/1, and the ``train`` command reads the
grades from its ``--qrels`` folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from sentence_transformers import CrossEncoder

from rerank_lab.errors import ConfigError
from rerank_lab.schema import to_dataset
from rerank_lab.train import REGIMES, TrainConfig, build_examples, train
from tests.losses.ranking_world import save_tiny_bert
from tests.test_train import TINY, VALIDATION, _cfg, _dd, _row

# Row g: positives g0 (grade 2) and g2 (grade 1); g1 is graded 2 in the qrels but labelled 0 (the
# label wins); negatives random.Random("42:g").shuffle([1, 3]) -> [1, 3].
# Row h: a positive without a qrels entry counts 1; random.Random("42:h").shuffle([1, 2]) -> [1, 2].
GRADED = [_row("g", "qg", ["g0", "g1", "g2", "g3"], [1, 0, 1, 0]), _row("h", "qh", ["h0", "h1", "h2"], [1, 0, 0])]
GRADES = {"g": {"g-0": 2, "g-1": 2, "g-2": 1}}


def test_graded_gains_give_list_labels_the_qrels_grades():
    ds = to_dataset(GRADED)
    graded = build_examples(ds, "lists", _cfg(gains="graded"), qrels=GRADES)
    # the grade-2 positive's list also holds the grade-1 positive ((3 - 1) // 2 = 1 lower positive), then a negative
    assert graded.to_list() == [
        {"query": "qg", "docs": ["g0", "g2", "g1"], "labels": [2.0, 1.0, 0.0]},
        {"query": "qg", "docs": ["g2", "g1", "g3"], "labels": [1.0, 0.0, 0.0]},
        {"query": "qh", "docs": ["h0", "h1", "h2"], "labels": [1.0, 0.0, 0.0]},
    ]
    binary = build_examples(ds, "lists", _cfg(gains="binary"), qrels=GRADES)
    assert binary["docs"] == [["g0", "g1", "g3"], ["g2", "g1", "g3"], ["h0", "h1", "h2"]]
    assert binary["labels"] == [[1.0, 0.0, 0.0]] * 3
    assert ds["labels"] == [[1, 0, 1, 0], [1, 0, 0]]  # the contract's labels stay 0/1


@pytest.mark.parametrize(("fmt", "positive"), [("pairs", 1.0), ("classes", 1)])
def test_pointwise_labels_stay_binary_with_graded_gains(fmt, positive):
    ds = build_examples(to_dataset(GRADED[:1]), fmt, _cfg(gains="graded"), qrels=GRADES)
    assert ds["text"] == ["g0", "g2", "g1", "g3"]  # positives, then the negatives
    assert ds["label"] == [positive, positive, 0, 0]


def test_only_list_format_losses_use_grades():
    uses = {(r, loss): TrainConfig(regime=r, loss=loss, teacher="t").uses_grades for r, losses in REGIMES.items() for loss in losses}
    assert {key for key, used in uses.items() if used} == {
        *(("listwise", n) for n in ("listnet", "listmle", "plistmle", "lambda", "ranknet")),
        *(("curriculum", n) for n in ("listnet", "listmle", "plistmle", "lambda", "ranknet")),
        ("pairwise", "ranknet"),
    }
    assert not TrainConfig(regime="listwise", loss="listnet", gains="binary").uses_grades
    assert not TrainConfig(regime="off-the-shelf").uses_grades


def test_gains_must_be_graded_or_binary():
    with pytest.raises(ConfigError, match=r"^train\.gains: unknown value, got 'ndcg' \(fix: use one of: graded, binary\)$"):
        TrainConfig(gains="ndcg")


@pytest.mark.parametrize("qrels", [None, {"validation": {"v1": {"v1-0": 1}}}])
def test_graded_list_loss_needs_train_qrels(qrels, tmp_path):
    expected = r"^train\.gains is graded and loss 'listnet' trains on list labels, but no train qrels were given \(fix: pass the convert"
    with pytest.raises(ConfigError, match=expected):
        train(_cfg(regime="listwise", loss="listnet", gains="graded"), _dd(TINY), tmp_path / "model", tmp_path / "ckpt", qrels=qrels)
    assert not (tmp_path / "model").exists()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A fresh 2-layer BERT (tests/losses/ranking_world.py): fast enough to train in a test."""
    return str(save_tiny_bert(tmp_path_factory.getbasetemp() / "tiny-bert"))


def _graded_run(loss: str, gains: str, tiny_bert: str, folder: Path) -> list[float]:
    cfg = _cfg(model=tiny_bert, regime="listwise", loss=loss, gains=gains, learning_rate=1e-3)
    metrics, history = train(cfg, _dd(GRADED), folder / "model", folder / "ckpt", qrels={"train": GRADES})
    assert (metrics["train_examples"], metrics["steps"]) == (3, 2)  # 3 lists, batches of 2
    return [h["loss"] for h in history if "loss" in h]


@pytest.mark.parametrize("loss", ["lambda", "listnet"])
def test_list_losses_train_on_graded_labels(loss, tiny_bert, tmp_path):
    losses = _graded_run(loss, "graded", tiny_bert, tmp_path)
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert CrossEncoder(str(tmp_path / "model"), device="cpu").num_labels == 1


def test_grades_reach_the_loss(tiny_bert, tmp_path):
    # ListNet's target is softmax(labels): [2, 0, 0] asks for more weight on the positive than
    # [1, 0, 0], so the first step's loss (same start, same batch) differs
    graded = _graded_run("listnet", "graded", tiny_bert, tmp_path / "graded")
    binary = _graded_run("listnet", "binary", tiny_bert, tmp_path / "binary")
    assert graded[0] != pytest.approx(binary[0], rel=1e-6, abs=0)


def test_cli_reads_graded_qrels_and_names_the_dev_metrics(tiny_bert, tmp_path):
    from click.testing import CliRunner

    from rerank_lab.cli import cli
    from rerank_lab.io.datasets import save_dataset
    from rerank_lab.io.qrels import write_qrels

    save_dataset(_dd(GRADED, VALIDATION), tmp_path / "dataset")
    write_qrels(GRADES, tmp_path / "qrels" / "train.tsv")
    section = dict(model=tiny_bert, regime="listwise", loss="listnet", batch_size=2, list_size=3, max_length=32, logging_steps=1)
    (tmp_path / "params.yaml").write_text(json.dumps({"train": {**section, "learning_rate": 1e-3, "max_dev_queries": 3}}))

    def run(name: str, *extra: str):
        args = ["train", "--params", str(tmp_path / "params.yaml"), "--dataset", str(tmp_path / "dataset")]
        args += [f"--{o}={tmp_path / name / o}" for o in ("output", "checkpoints", "metrics", "plots")]
        return CliRunner().invoke(cli, [*args, *extra])

    missing = run("no-qrels")
    assert isinstance(missing.exception, ConfigError) and "no train qrels were given" in str(missing.exception)
    result = run("graded", "--qrels", str(tmp_path / "qrels"))
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "graded" / "metrics").read_text())
    assert {k for k in metrics if k.startswith("dev")} == {"dev_mined_map", "dev_mined_mrr@10", "dev_mined_ndcg@10"}
    dev = (tmp_path / "graded" / "plots" / "dev.tsv").read_text().splitlines()
    assert dev[0] == "step\tdev_mined_map\tdev_mined_mrr@10\tdev_mined_ndcg@10"
    # the same run with gains: binary logs another first-step loss: the grades came from the folder
    section["gains"] = "binary"
    (tmp_path / "params.yaml").write_text(json.dumps({"train": {**section, "learning_rate": 1e-3, "max_dev_queries": 3}}))
    assert run("binary", "--qrels", str(tmp_path / "qrels")).exit_code == 0
    first = {name: (tmp_path / name / "plots" / "loss.tsv").read_text().splitlines()[1] for name in ("graded", "binary")}
    assert first["graded"].split("\t")[0] == first["binary"].split("\t")[0] == "1"
    assert float(first["graded"].split("\t")[1]) != pytest.approx(float(first["binary"].split("\t")[1]), rel=1e-6, abs=0)
