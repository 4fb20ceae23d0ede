"""rerank-lab check: params whose sections disagree stop before any stage runs, one line each."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import pytest
import yaml

from rerank_lab.check import ATTESTED, consistency
from rerank_lab.cli import main
from rerank_lab.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def _with(changes: dict) -> dict:
    params = copy.deepcopy(PARAMS)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[last] = value
    return params


def test_the_shipped_params_are_consistent() -> None:
    consistency(PARAMS)
    consistency(_with({"task.unit": "sentences"}))  # SciFact has sentence evidence
    # first stages and fusions tuned alone, and compared with by evaluate under their tuned names
    consistency(_with({"tune.first_stages": ["bm25", "dense", "rrf"], "evaluate.compare_also": ["rrf+tuned"]}))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # the zero-shot cell written wrong: trained on a dataset that no stage converts
        ({"datasets": ["nfcorpus"]}, r"^train\.dataset: unknown dataset, got 'scifact_rationales' \(fix: .*nfcorpus"),
        ({"datasets": ["nfcorpsu"]}, r"^datasets: unknown convert\.sources entry, got 'nfcorpsu' \(fix: did you mean 'nfcorpus'\?"),
        ({"datasets": "scifact_rationales"}, r"^datasets: must be a non-empty list of names, got 'scifact_rationales'"),
        ({"first_stage": ["bm25", "splade"]}, r"^first_stage: unknown retrievers entry, got 'splade'"),
        ({"first_stage": ["bm25", "bm25s"]}, r"^fusions\.rrf\.runs: unknown first_stage entry, got 'dense'"),
        ({"fusion": ["rrf", "combsum"]}, r"^fusion: unknown fusions entry, got 'combsum'"),
        # the zero-shot cell's first try: 25,343 ArguAna pairs scored, then evaluate found no data/fuse/<ds>
        ({"fusion": []}, r"^fusion: is empty: evaluate reads each dataset's data/fuse/<dataset>, which only a fusion writes, got \[\]"),
        ({"score.runs": ["bm25", "rrf"]}, r"^score\.runs: unknown first_stage entry, got 'rrf'"),
        ({"tune.run": "dense"}, r"^tune\.run: unknown score\.runs entry, got 'dense' \(fix: .*bm25"),
        # a first stage tuned alone must be one the pipeline writes (a retriever that runs, or a fusion)
        ({"tune.first_stages": ["bm25", "splade"]}, r"^tune\.first_stages: unknown first_stage or fusion entry, got 'splade' \(fix: "),
        ({"miners.mixed.run": "splade"}, r"^miners\.mixed\.run: unknown first_stage entry, got 'splade'"),
        ({"teachers.bm25.run": "bm25x"}, r"^teachers\.bm25\.run: unknown first_stage entry, got 'bm25x' \(fix: did you mean 'bm25'\?"),
        # a cell renaming the reranked runs while evaluate still compares with the old name: found by evaluate, last
        ({"score.name": "colbert"}, r"^evaluate\.compare_also: unknown run, got 'bm25\+ce' \(fix: .*bm25\+colbert, bm25\+colbert\+tuned"),
        ({"evaluate.baseline": "bm25+tuned"}, r"^evaluate\.baseline: unknown run, got 'bm25\+tuned' \(fix: "),
        # sentence mode on a dataset without sentence evidence: refused before convert runs
        (
            {"task.unit": "sentences", "datasets": ["scifact_rationales", "nfcorpus"]},
            r"^datasets: holds 'nfcorpus' \(format beir\), which has no sentence-level evidence for task\.unit sentences, got 'nfcorpus'",
        ),
    ],
)
def test_sections_that_disagree_are_one_line(changes: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        consistency(_with(changes))
    assert re.match(expected, str(info.value)), str(info.value)
    assert "\n" not in str(info.value)


def _main(args: list, monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["rerank-lab", *map(str, args)])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code, capsys.readouterr().err


def test_check_through_the_cli_writes_its_constant_attestation_or_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump(PARAMS))
    bad.write_text(yaml.safe_dump(_with({"datasets": ["nfcorpus"]})))
    out = tmp_path / "check"
    code, err = _main(["check", "--params", bad, "--output", out], monkeypatch, capsys)
    assert code == 2 and err.startswith("error: train.dataset: unknown dataset") and len(err.splitlines()) == 1
    assert not out.exists()
    monkeypatch.setattr(sys, "argv", ["rerank-lab", "check", "--params", str(good), "--output", str(out)])
    main()
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert first["checked.txt"] == ATTESTED.encode()
    # a different (still consistent) params file: the same bytes, so no stage after check reruns
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(_with({"tune.epsilon": 1.0, "train.seed": 7})))
    monkeypatch.setattr(sys, "argv", ["rerank-lab", "check", "--params", str(other), "--output", str(out)])
    main()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
