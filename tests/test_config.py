"""Typed params: every section refuses a wrong type, range, choice or key with one line naming the
params key, the value and the fix -- never a silent coercion ("train" as a list of characters) or a
Python traceback."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import get_args

import datasets
import pytest
import yaml

from rerank_lab.cli import main
from rerank_lab.config import (
    ConvertConfig,
    DedupConfig,
    EvaluateConfig,
    RetrieveConfig,
    SourceFormat,
    Split,
    convert_config,
    parse,
    section,
)
from rerank_lab.errors import ConfigError
from rerank_lab.io.datasets import save_dataset
from rerank_lab.mine import MineConfig
from rerank_lab.miners import make_miner
from rerank_lab.rerankers.pairwise import CrossEncoderReranker
from rerank_lab.retrievers import make_fusion, make_retriever
from rerank_lab.schema import SPLITS, to_dataset
from rerank_lab.score import ScoreConfig
from rerank_lab.teacher import TeacherScoreConfig
from rerank_lab.train import TrainConfig

# (section model, its params values, the section's key, the one line expected)
CASES = [
    # a string where a list belongs: it used to become a tuple of characters
    (DedupConfig, {"splits": "train"}, "dedup", r"^dedup\.splits: must be a list, got 'train' \(fix: write a YAML list: \[train\]\)$"),
    (
        RetrieveConfig,
        {"splits": "test"},
        "retrieve",
        r"^retrieve\.splits: must be a list, got 'test' \(fix: write a YAML list: \[test\]\)$",
    ),
    (
        EvaluateConfig,
        {"splits": "test"},
        "evaluate",
        r"^evaluate\.splits: must be a list, got 'test' \(fix: write a YAML list: \[test\]\)$",
    ),
    (
        RetrieveConfig,
        {"splits": ["trian"]},
        "retrieve",
        r"^retrieve\.splits\[0\]: unknown value, got 'trian' \(fix: did you mean 'train'\? use one of: train, validation, test\)$",
    ),
    (
        MineConfig,
        {"splits": ["train", "dev"]},
        "mine",
        r"^mine\.splits\[1\]: unknown value, got 'dev' \(fix: use one of: train, validation, test\)$",
    ),
    (RetrieveConfig, {"splits": []}, "retrieve", r"^retrieve\.splits: must list at least 1 item, got \[\]"),
    # no bool -> int, no float -> int, no str -> number
    (
        RetrieveConfig,
        {"depth": True},
        "retrieve",
        r"^retrieve\.depth: must be a whole number, got true \(fix: write a whole number, e\.g\. 100\)$",
    ),
    (
        RetrieveConfig,
        {"depth": 2.5},
        "retrieve",
        r"^retrieve\.depth: must be a whole number, got 2\.5 \(fix: write a whole number, e\.g\. 100\)$",
    ),
    (RetrieveConfig, {"depth": 0}, "retrieve", r"^retrieve\.depth: must be >= 1, got 0 \(fix: e\.g\. 100\)$"),
    (DedupConfig, {"max_duplicates": 1.5}, "dedup", r"^dedup\.max_duplicates: must be a whole number or null, got 1\.5"),
    (
        ConvertConfig,
        {"format": "beir", "validation_max": 0},
        "convert.sources.x",
        r"^convert\.sources\.x\.validation_max: must be >= 1, got 0 \(fix: e\.g\. 5000\)$",
    ),
    (
        ConvertConfig,
        {"format": "beir", "validation_max": "ten"},
        "convert.sources.x",
        r"^convert\.sources\.x\.validation_max: must be a whole number, got 'ten' \(fix: write a whole number, e\.g\. 5000\)$",
    ),
    (
        ConvertConfig,
        {"format": "beir", "test_max": "10"},
        "convert.sources.x",
        r"^convert\.sources\.x\.test_max: must be a whole number, got '10' \(fix: write a whole number: 10, without quotes\)$",
    ),
    (
        TrainConfig,
        {"learning_rate": "7e-5"},
        "train",
        r"^train\.learning_rate: must be a number, got '7e-5' \(fix: write a number: 7\.0e-05; YAML reads 7e-5 as text\)$",
    ),
    (TrainConfig, {"epochs": float("nan")}, "train", r"^train\.epochs: must be a finite number, got nan"),
    (TrainConfig, {"max_queries": True}, "train", r"^train\.max_queries: must be a whole number or null, got true"),
    (
        CrossEncoderReranker,
        {"dtype": "bf16"},
        "rerankers.ce",
        r"^rerankers\.ce\.dtype: unknown value, got 'bf16' \(fix: did you mean 'bfloat16'\? "
        r"use one of: auto, float32, bfloat16, float16\)$",
    ),
    (
        ConvertConfig,
        {"format": "beir", "remove_query": "yes"},
        "convert.sources.x",
        r"^convert\.sources\.x\.remove_query: must be true or false, got 'yes'",
    ),
    # the missing required key: was "__init__() missing 1 required positional argument: 'format'"
    (
        ConvertConfig,
        {"seed": 3},
        "convert.sources.x",
        r"^convert\.sources\.x\.format: missing \(fix: set format to one of: beir, triplets, hardneg, scifact_rationales\)$",
    ),
    (
        ConvertConfig,
        {"format": "bier"},
        "convert.sources.x",
        r"^convert\.sources\.x\.format: unknown value, got 'bier' \(fix: did you mean 'beir'\?",
    ),
    # unknown keys, with the near miss
    (
        RetrieveConfig,
        {"depht": 200},
        "retrieve",
        r"^retrieve\.depht: unknown key \(fix: did you mean 'depth'\? valid keys: depth, splits\)$",
    ),
    (
        TeacherScoreConfig,
        {"teachers": "bm25"},
        "teacher_score",
        r"^teacher_score\.teachers: must be a list or null, got 'bm25' \(fix: write a YAML list: \[bm25\]\)$",
    ),
    # a section written as something other than key: value lines
    (
        DedupConfig,
        ["train"],
        "dedup",
        r"^dedup: must be a mapping of key: value pairs, got \['train'\] \(fix: write one key: value per line under dedup\)$",
    ),
]


@pytest.mark.parametrize(("model", "values", "where", "expected"), CASES, ids=[f"{c[2]}-{c[1]}" for c in CASES])
def test_a_bad_value_is_one_line_naming_key_value_and_fix(model, values, where, expected) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse(model, values, where)


def _convert(entry, seed=1) -> dict:
    return {"convert": {"seed": seed, "sources": {"x": entry}}}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            _convert({"format": "beir"}, seed="abc"),
            r"^convert\.seed: must be a whole number, got 'abc' \(fix: write a whole number, e\.g\. 42\)$",
        ),
        (_convert(["beir"]), r"^convert\.sources\.x: must be a mapping of key: value pairs, got \['beir'\]"),
        (_convert(None), r"^convert\.sources\.x\.format: missing \(fix: set format to one of: beir,"),
        (
            _convert({"format": "beir", "seed": 7}),
            r"^convert\.sources\.x\.seed: is shared by every source, got 7 \(fix: set convert\.seed instead\)$",
        ),
        ({"convert": {"seed": 1, "sources": {"y": {"format": "beir"}}}}, r"^params has no 'convert\.sources\.x'"),
    ],
)
def test_a_source_entry_is_checked_with_the_shared_seed(params, expected) -> None:
    with pytest.raises(ConfigError, match=expected):
        convert_config(params, "x")


def test_convert_config_takes_the_shared_seed() -> None:
    cfg = convert_config(_convert({"format": "beir", "validation_fraction": 0.2}, seed=7), "x")
    assert cfg == ConvertConfig(format="beir", seed=7, validation_fraction=0.2)


def test_a_missing_entry_suggests_the_near_miss() -> None:
    with pytest.raises(
        ConfigError, match=r"^params has no 'miners\.mixd' \(fix: did you mean 'miners\.mixed'\? or add miners\.mixd to params"
    ):
        section({"miners": {"mixed": {"type": "mixed"}}}, "miners.mixd")


def test_registry_entries_are_typed() -> None:
    with pytest.raises(ConfigError, match=r"^retrievers\.bm25\.k1: must be a number, got 'high' \(fix: write a number, e\.g\. 0\.9\)$"):
        make_retriever("bm25", {"type": "bm25-pyserini", "k1": "high"})
    with pytest.raises(ConfigError, match=r"^retrievers\.bm25\.b: must be in \[0, 1\], got 4"):
        make_retriever("bm25", {"type": "bm25-bm25s", "b": 4})
    with pytest.raises(ConfigError, match=r"^fusions\.rrf\.runs: must be a list, got 'bm25' \(fix: write a YAML list: \[bm25\]\)$"):
        make_fusion("rrf", {"type": "rrf", "runs": "bm25"})
    with pytest.raises(ConfigError, match=r"^miners\.hard\.range_max: must be > range_min \(10\), got 5"):
        make_miner("hard", {"type": "retriever-hard", "range_max": 5})
    with pytest.raises(ConfigError, match=r"^miners\.hard: must be a mapping of key: value pairs, got \['retriever-hard'\]"):
        make_miner("hard", ["retriever-hard"])


def test_direct_construction_names_the_section() -> None:
    with pytest.raises(ConfigError, match=r"^score\.runs: must be a list, got 'bm25'"):
        ScoreConfig(runs="bm25")
    with pytest.raises(ConfigError, match=r"^evaluate\.compare_also: needs evaluate\.baseline, got \['ce'\]"):
        EvaluateConfig(compare_also=["ce"])


def test_what_was_valid_stays_valid_and_keeps_its_values() -> None:
    cfg = parse(TrainConfig, {"epochs": 1, "learning_rate": 7.0e-5, "max_queries": None}, "train")
    assert type(cfg.epochs) is int and cfg.epochs == 1  # as written: train's fingerprint and saved config do not change
    assert dataclasses.asdict(cfg)["epochs"] == 1
    retrieve = parse(RetrieveConfig, {"depth": 200, "splits": ["test"]}, "retrieve")
    assert retrieve == RetrieveConfig(depth=200, splits=("test",)) and isinstance(retrieve.splits, tuple)
    assert len({retrieve, RetrieveConfig(200, ("test",))}) == 1  # frozen, hashable, positional arguments
    assert parse(DedupConfig, None, "dedup") == DedupConfig()  # an empty section: the defaults
    assert parse(DedupConfig, {"max_duplicates": None}, "dedup").max_duplicates is None
    assert parse(TeacherScoreConfig, {"teachers": None}, "teacher_score").teachers == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        retrieve.depth = 3  # type: ignore[misc]


def test_the_choice_lists_are_the_contract_s() -> None:
    from rerank_lab.convert import FORMATS

    assert get_args(Split) == SPLITS
    assert set(get_args(SourceFormat)) == set(FORMATS)


# --- through the CLI: exit 2, one line, nothing written -------------------------------------------

ROW = {"id": "q1", "query": "x", "texts": ["Some text."], "text_ids": ["d1"], "context_spans": [[[0, 10]]], "labels": [1]}


def _fails_through_main(args: list, expected: str, monkeypatch, capsys) -> None:
    for var, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("TOKENIZERS_PARALLELISM", "false")):
        monkeypatch.setenv(var, value)  # main() sets these; monkeypatch puts the old values back
    monkeypatch.setattr(sys, "argv", ["rerank-lab", *map(str, args)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main()
    captured = capsys.readouterr()
    assert info.value.code == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert re.match(expected, lines[0].removeprefix("error: ")), lines[0]


def _params(tmp: Path, params: dict) -> Path:
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_dedup_with_splits_as_a_string_stops_instead_of_doing_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    """Was: ('t', 'r', 'a', 'i', 'n') matched no split, nothing was deduplicated, exit 0."""
    save_dataset(datasets.DatasetDict({"train": to_dataset([ROW])}), tmp_path / "dataset")
    params = _params(
        tmp_path, {"dedup": {"max_duplicates": 0, "splits": "train"}, "convert": {"seed": 1, "sources": {"x": {"format": "triplets"}}}}
    )
    output, metrics = tmp_path / "out" / "dedup", tmp_path / "out" / "dedup.json"
    args = ["dedup", "--params", params, "--source", "x", "--input", tmp_path / "dataset", "--output", output, "--metrics", metrics]
    _fails_through_main(args, r"^dedup\.splits: must be a list, got 'train' \(fix: write a YAML list: \[train\]\)$", monkeypatch, capsys)
    assert not output.exists() and not metrics.exists()


@pytest.mark.parametrize("baseline", [None, "bm25"])
def test_evaluate_with_splits_as_a_string_names_the_key(baseline, tmp_path: Path, monkeypatch, capsys) -> None:
    """Was: an empty metrics file, exit 0 -- or, with a baseline, "set evaluate.baseline to one of: " and no names."""
    save_dataset(datasets.DatasetDict({"test": to_dataset([ROW])}), tmp_path / "dataset")
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (tmp_path / "runs" / "bm25").mkdir(parents=True)
    (tmp_path / "runs" / "bm25" / "test.trec").write_text("q1 Q0 d1 1 2.5 bm25\n")
    params = _params(tmp_path, {"evaluate": {"metrics": ["ndcg@10"], "splits": "test", "baseline": baseline}})
    output, metrics = tmp_path / "out" / "per_query", tmp_path / "out" / "evaluate.json"
    args = ["evaluate", "--params", params, "--runs", tmp_path / "runs", "--dataset", tmp_path / "dataset", "--qrels", tmp_path / "qrels"]
    args += ["--output", output, "--metrics", metrics]
    _fails_through_main(args, r"^evaluate\.splits: must be a list, got 'test'", monkeypatch, capsys)
    assert not output.exists() and not metrics.exists()


def test_a_bad_command_line_is_one_line_naming_the_help(tmp_path: Path, monkeypatch, capsys) -> None:
    args = ["train", "--dataset", tmp_path, "--output", tmp_path / "model"]
    _fails_through_main(args, r"^Missing option '--metrics'\. \(fix: see rerank-lab train --help\)$", monkeypatch, capsys)


@pytest.mark.parametrize(
    ("command", "params", "expected"),
    [
        ("convert", _convert({"format": "beir"}, seed="abc"), r"^convert\.seed: must be a whole number, got 'abc'"),
        ("convert", _convert({"format": "beir", "validation_max": "ten"}), r"^convert\.sources\.x\.validation_max: must be a whole number"),
        ("convert", _convert({"format": "beir", "validation_max": 0}), r"^convert\.sources\.x\.validation_max: must be >= 1, got 0"),
        ("convert", _convert(["beir"]), r"^convert\.sources\.x: must be a mapping of key: value pairs, got \['beir'\]"),
        ("convert", _convert(None), r"^convert\.sources\.x\.format: missing \(fix: set format to one of:"),
        (
            "dedup",
            {"dedup": {"max_duplicates": 1.5}, **_convert({"format": "triplets"})},
            r"^dedup\.max_duplicates: must be a whole number or null, got 1\.5",
        ),
        ("index", {"retrievers": {"bm25": {"type": "bm25-bm25s", "k1": "high"}}}, r"^retrievers\.bm25\.k1: must be a number, got 'high'"),
        (
            "retrieve",
            {"retrieve": {"depth": 2.5}, "retrievers": {"bm25": {"type": "bm25-bm25s"}}},
            r"^retrieve\.depth: must be a whole number, got 2\.5",
        ),
        (
            "retrieve",
            {"retrieve": {"depth": True}, "retrievers": {"bm25": {"type": "bm25-bm25s"}}},
            r"^retrieve\.depth: must be a whole number, got true",
        ),
        (
            "retrieve",
            {"retrieve": {"splits": "test"}, "retrievers": {"bm25": {"type": "bm25-bm25s"}}},
            r"^retrieve\.splits: must be a list, got 'test'",
        ),
        (
            "retrieve",
            {"retrieve": {"splits": ["trian"]}, "retrievers": {"bm25": {"type": "bm25-bm25s"}}},
            r"^retrieve\.splits\[0\]: .*did you mean 'train'",
        ),
        (
            "fuse",
            {"retrieve": {}, "fusions": {"rrf": {"type": "rrf", "runs": ["bm25"], "k0": "sixty"}}},
            r"^fusions\.rrf\.k0: must be a whole number, got 'sixty'",
        ),
        (
            "mine",
            {"mine": {"miner": "random", "num_negatives": 0}, "miners": {"random": {"type": "random"}}},
            r"^mine\.num_negatives: must be >= 1, got 0",
        ),
        (
            "teacher-score",
            {"teacher_score": {"teachers": ["bm25"]}, "teachers": {"bm25": {"type": "first-stage", "run": "bm25", "missing": "zero"}}},
            r"^teachers\.bm25\.missing: must be a number, got 'zero'",
        ),
        ("train", {"train": {"regime": "listwize"}}, r"^train\.regime: .*did you mean 'listwise'"),
        ("score", {"score": {"splits": "test"}}, r"^score\.splits: must be a list, got 'test'"),
        ("tune", {"tune": {"epsilon": 1.5}, "score": {}}, r"^tune\.epsilon: must be in \[0, 1\], got 1\.5"),
        ("evaluate", {"evaluate": {"splits": ["tset"]}}, r"^evaluate\.splits\[0\]: .*did you mean 'test'"),
    ],
)
def test_bad_params_stop_every_command_before_it_reads_or_writes(command, params, expected, tmp_path: Path, monkeypatch, capsys) -> None:
    path, out = _params(tmp_path, params), tmp_path / "out"
    missing = tmp_path / "no-such-input"  # never read: the params are checked first
    args = {
        "convert": ["--source", "x", "--input", missing, "--output", out / "data", "--metrics", out / "m.json"],
        "dedup": ["--source", "x", "--input", missing, "--output", out / "data", "--metrics", out / "m.json"],
        "index": ["--retriever", "bm25", "--corpus", missing, "--output", out / "index"],
        "retrieve": ["--retriever", "bm25", "--index", missing, "--dataset", missing, "--output", out / "runs"],
        "fuse": ["--fusion", "rrf", "--runs", missing, "--output", out / "fused"],
        "mine": [
            "--input", missing, "--corpus", missing, "--qrels", missing, "--runs", missing, "--output", out / "data",
            "--metrics", out / "m.json",
        ],
        "teacher-score": ["--input", missing, "--runs", missing, "--output", out / "data"],
        "train": [
            "--dataset", missing, "--qrels", missing, "--output", out / "model", "--checkpoints", out / "ckpt", "--metrics",
            out / "m.json", "--plots", out / "plots",
        ],
        "score": [
            "--model", missing, "--runs", missing, "--dataset", missing, "--corpus", missing, "--output", out / "runs",
            "--metrics", out / "m.json",
        ],
        "tune": [
            "--dataset", missing, "--qrels", missing, "--runs", missing, "--scores", missing, "--output", out / "t", "--metrics",
            out / "m.json",
        ],
        "evaluate": ["--runs", missing, "--dataset", missing, "--qrels", missing, "--metrics", out / "m.json", "--output", out / "e"],
    }[command]
    _fails_through_main([command, "--params", path, *args], expected, monkeypatch, capsys)
    assert not out.exists()


def test_params_read_floats_as_dvc_writes_them(tmp_path: Path) -> None:
    # `dvc exp run -S train.learning_rate=2e-5` writes 2e-05 (no dot): YAML 1.1 would read it as text
    from rerank_lab.params_file import load_params
    from rerank_lab.train import TrainConfig

    path = tmp_path / "params.yaml"
    path.write_text("train:\n  learning_rate: 2e-05\n  warmup_ratio: 1e-1\n  seed: 7\n")
    params = load_params(path)
    assert params["train"] == {"learning_rate": 2e-05, "warmup_ratio": 0.1, "seed": 7}
    assert parse(TrainConfig, params["train"], "train").learning_rate == 2e-05
