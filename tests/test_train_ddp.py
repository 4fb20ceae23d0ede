"""train on 2 processes (``train.processes: 2``; DDP, gloo on the CPU): the stage command as dvc.yaml
runs it trains a tiny cross-encoder, one process writes one model folder, the plots and the metrics
once, nothing else is left behind, a rerun with the same seed gives the same model and metrics, a
pruned tier-B trial stops every process, and a machine without the cores for it refuses in one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
import yaml
from safetensors.torch import load_file

from rerank_lab.errors import ConfigError
from rerank_lab.io.datasets import load_dataset, save_dataset
from rerank_lab.schema import to_dataset
from rerank_lab.train import VOLATILE, TrainConfig, train
from tests.test_cache import _tiny_cross_encoder

ROOT = Path(__file__).resolve().parents[1]
TOPICS = ["cats", "rivers", "volcanoes", "pianos", "bread", "satellites"]
OTHER = ["Glaciers move slowly.", "Tea is brewed with hot water.", "Chess has sixty-four squares."]


def _row(rid: str, topic: str, positive_last: bool = False) -> dict:
    texts = [f"All about {topic}: {topic} explained.", *OTHER]
    labels = [1, 0, 0, 0]
    if positive_last:  # a model that scores every text alike keeps this order on ties: MRR 1/4
        texts, labels = texts[::-1], labels[::-1]
    return {
        "id": rid,
        "query": f"what about {topic}?",
        "texts": texts,
        "text_ids": [f"{rid}-{i}" for i in range(len(texts))],
        "context_spans": [[[0, len(t)]] for t in texts],
        "labels": labels,
    }


# 6 training lists of 3 in steps of 4 (2 lists per process): 2 steps an epoch, the second filled up
# with 2 repeated lists; 3 epochs -> 6 steps, a dev evaluation after steps 2, 4 and 6. A high
# learning rate, so that a tiny model learns something in 6 steps.
SETTINGS = dict(
    regime="listwise",
    loss="listnet",
    gains="binary",
    batch_size=4,
    list_size=3,
    max_length=32,
    epochs=3,
    learning_rate=3e-2,
    warmup_ratio=0.0,
    logging_steps=1,
    eval_steps=2,
    save_steps=1000,
    max_dev_queries=2,
    seed=7,
    processes=2,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ddp")
    model = _tiny_cross_encoder(root / "models" / "tiny")
    rows = [_row(f"q{i}", t) for i, t in enumerate(TOPICS)]
    dev = [_row(f"v{i}", t, positive_last=True) for i, t in enumerate(["owls", "tea"])]
    save_dataset(datasets.DatasetDict({"train": to_dataset(rows), "validation": to_dataset(dev)}), root / "dataset")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"train": {**SETTINGS, "model": str(model)}}))
    return {"root": root, "model": model, "dataset": root / "dataset", "params": params}


def _stage(world: dict[str, Path], out: Path) -> subprocess.CompletedProcess:
    """``rerank-lab train`` with the options dvc.yaml gives it (no --qrels: binary gains)."""
    args = ["train", "--params", world["params"], "--dataset", world["dataset"], "--models", world["root"] / "models"]
    args += ["--output", out / "model", "--metrics", out / "metrics.json", "--plots", out / "plots"]
    cmd = [sys.executable, "-c", "from rerank_lab.cli import main; main()", *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def stage_run(world) -> Path:
    """The stage command, as dvc.yaml runs it: its output folder."""
    out = world["root"] / "stage"
    done = _stage(world, out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert done.stdout.count("train: train_seconds") == 1, done.stdout  # one describe line: the launcher's
    return out


def _column(tsv: Path, name: str) -> list[str]:
    lines = [line.split("\t") for line in tsv.read_text().splitlines()]
    return [row[lines[0].index(name)] for row in lines[1:]]


def test_two_processes_train_one_model_and_write_the_metrics_once(world, stage_run):
    out = stage_run
    # exactly what dvc.yaml declares, no temporaries (.model.tmp-*, .metrics.json.tmp-*) beside them
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model", "plots"]
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]
    assert not [p for p in (out / "model").iterdir() if p.is_dir()]  # no checkpoint-* or rank folders in it
    assert sorted(p.name for p in (out / "plots").iterdir()) == [".rerank-lab-output", "dev.tsv", "loss.tsv"]
    metrics = json.loads((out / "metrics.json").read_text())
    # 6 lists -> 2 steps an epoch of 4 lists (2 per process), 3 epochs: 6 optimizer steps, not 12
    assert (metrics["train_examples"], metrics["steps"]) == (6, 6)
    assert set(metrics) == {"train_examples", "steps", "dev_mined_ndcg@10", "dev_mined_mrr@10", "dev_mined_map"}
    info = json.loads((out / "model" / "rerank_lab_train.json").read_text())
    assert info["config"]["processes"] == 2 and info["metrics"] == metrics
    # one loss line per step and one dev row per evaluation: written once, not once per process
    assert _column(out / "plots" / "loss.tsv", "step") == ["1", "2", "3", "4", "5", "6"]
    assert _column(out / "plots" / "dev.tsv", "step") == ["2", "4", "6"]
    assert float(_column(out / "plots" / "dev.tsv", "dev_mined_mrr@10")[-1]) == metrics["dev_mined_mrr@10"]
    assert metrics["dev_mined_mrr@10"] > 0.25  # a model that scores every text alike: 1/4 (positive last)
    # it trained: the loss (ln 3 = 1.0986 for a model that scores every text alike) fell, and the
    # weights of the encoder and the head moved from the tiny start
    loss = [float(v) for v in _column(out / "plots" / "loss.tsv", "loss")]
    assert loss[0] == pytest.approx(1.0986, abs=2e-3)
    assert max(loss[-2:]) < loss[0] - 0.05
    start, trained = load_file(world["model"] / "model.safetensors"), load_file(out / "model" / "model.safetensors")
    assert set(start) == set(trained)
    moved = {k for k in start if not torch.equal(start[k], trained[k])}
    assert {"classifier.weight", "bert.encoder.layer.0.attention.self.query.weight"} <= moved


def test_the_same_seed_gives_the_same_model_and_metrics(world, stage_run, tmp_path):
    """The same training again, through the library this time: the same numbers, bit for bit."""
    cfg = TrainConfig(**{**SETTINGS, "model": str(world["model"])})
    metrics, history = train(cfg, load_dataset(world["dataset"]), tmp_path / "model", tmp_path / "ck")
    assert {k: v for k, v in metrics.items() if k not in VOLATILE} == json.loads((stage_run / "metrics.json").read_text())
    assert [str(h["loss"]) for h in history if "loss" in h] == _column(stage_run / "plots" / "loss.tsv", "loss")
    a, b = load_file(stage_run / "model" / "model.safetensors"), load_file(tmp_path / "model" / "model.safetensors")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_a_pruned_trial_stops_every_process_at_the_same_step(world, tmp_path):
    """Rank 0 reports each dev evaluation once; the threshold pruner (nDCG never reaches 2) prunes at
    the first evaluation from step 4 on, and rank 1 stops there too instead of waiting forever."""
    from tests.test_hpo_trial import _trial

    study, trial, trial_link = _trial(tmp_path, pruner="threshold", prune_below=2.0, warmup_steps=4)
    cfg = TrainConfig(**{**SETTINGS, "model": str(world["model"])})
    metrics, history = train(cfg, load_dataset(world["dataset"]), tmp_path / "m", tmp_path / "ck", trial=trial_link)
    assert (metrics["trial_pruned"], metrics["trial_steps"], metrics["steps"]) == (1, 4, 4)
    reported = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number).intermediate_values
    assert reported == {h["step"]: h["eval_dev_mined_ndcg@10"] for h in history if "eval_dev_mined_ndcg@10" in h}
    assert sorted(reported) == [2, 4]
    assert (tmp_path / "m" / "config.json").is_file()


def test_more_processes_than_cores_are_refused_in_one_line_before_any_work(world, tmp_path, monkeypatch, capsys):
    from tests.test_config import _fails_through_main

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)  # a 2-core machine
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": {**SETTINGS, "model": str(world["model"]), "processes": 4}}))
    out = tmp_path / "out"
    args = ["train", "--params", params, "--dataset", world["dataset"], "--models", world["root"] / "models"]
    args += ["--output", out / "model", "--metrics", out / "metrics.json", "--plots", out / "plots", "--checkpoints", tmp_path / "ck"]
    expected = r"^train\.processes: asks for more processes than this machine has CPU cores \(2\), got 4 "
    expected += r"\(fix: set train\.processes to at most 2\)$"
    _fails_through_main(args, expected, monkeypatch, capsys)
    assert not out.exists() and not (tmp_path / "ck").exists()


def test_a_stage_started_by_torchrun_itself_is_refused(monkeypatch):
    from rerank_lab.train import configure

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"one of 2 distributed workers .*fix: run it as a plain command and set train\.processes"):
        configure({"train": {}})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"processes": 0}, r"^train\.processes: must be >= 1, got 0 \(fix: e\.g\. 1\)$"),
        ({"processes": 3, "batch_size": 4}, r"^train\.batch_size: must be a multiple of train\.processes \(3\), got 4 \(fix: e\.g\. 3"),
    ],
)
def test_bad_process_counts_are_one_line(values, message):
    from rerank_lab.config import parse

    with pytest.raises(ConfigError) as info:
        parse(TrainConfig, values, "train")
    assert re.match(message, str(info.value)), str(info.value)
