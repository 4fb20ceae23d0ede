"""The reproduction table: its rows parse, bad rows are clear errors, and it reproduces: the BM25
rows in the default suite (~100 s on 2 cores: BM25 stages only), the whole SciFact table as a slow test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from rerank_lab.errors import ConfigError, InputError
from rerank_lab.repro import _set, check_table, load_table

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "repro" / "beir.yaml"
BM25_RUNS = ("bm25", "bm25s")


def test_shipped_table_rows_are_complete() -> None:
    rows = load_table(ROOT / "repro" / "beir.yaml")
    assert {r.id for r in rows} >= {"scifact.bm25-pyserini", "nfcorpus.bm25-pyserini", "scifact.dense-minilm"}
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for r in rows:
        assert r.dataset in params["convert"]["sources"]
        assert r.run in params["retrievers"] or r.run in params["fusions"]
        assert r.command.startswith("dvc ")
        assert 0 < r.tolerance < 0.01


def test_bad_row_names_the_row(tmp_path: Path) -> None:
    table = tmp_path / "t.yaml"
    table.write_text("- id: x\n  dataset: scifact\n  bogus: 1\n")
    with pytest.raises(InputError, match=r"t\.yaml: row 1: bad row"):
        load_table(table)


def test_missing_table_and_empty_selection(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="reproduction table not found"):
        load_table(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="no rows selected"):
        check_table(ROOT / "repro" / "beir.yaml", ("no-such-row",), tmp_path)


def test_dotted_override_sets_nested_keys() -> None:
    params = {"a": {"b": 1}, "datasets": ["scifact"]}
    _set(params, "a.c.d", 2)
    _set(params, "datasets", ["tiny"])
    assert params == {"a": {"b": 1, "c": {"d": 2}}, "datasets": ["tiny"]}


@pytest.mark.slow
def test_scifact_rows_reproduce(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert check_table(ROOT / "repro" / "beir.yaml", ("scifact",), tmp_path)


def _bm25_rows():
    return [r for r in load_table(TABLE) if r.run in BM25_RUNS]


def test_bm25_rows_pin_pyserini_and_run_only_bm25_stages() -> None:
    got = {(r.dataset, r.run, r.metric): r.expected for r in _bm25_rows()}
    published = {  # pyserini 2CR, BEIR v1.0.0 "flat" BM25
        ("scifact", "bm25", "ndcg@10"): 0.6789,
        ("scifact", "bm25", "recall@100"): 0.9253,
        ("nfcorpus", "bm25", "ndcg@10"): 0.3218,
        ("nfcorpus", "bm25", "recall@100"): 0.2457,
    }
    assert got.items() >= published.items()
    for r in _bm25_rows():
        # the default suite runs these rows: their targets must never pull in the dense index
        assert r.targets and all(re.fullmatch(rf"retrieve@{r.dataset}-bm25s?", t) for t in r.targets), r.id
        assert r.params["retrieve.depth"] >= 100  # Recall@100
        assert r.params[f"convert.sources.{r.dataset}.remove_query"] is True  # as pyserini's BEIR commands


def test_bm25_rows_reproduce(tmp_path: Path) -> None:
    """SciFact and NFCorpus BM25 (pyserini and bm25s), nDCG@10 and Recall@100, through `dvc repro`."""
    lines: list[str] = []
    rows = tuple(r.id for r in _bm25_rows())
    ok = check_table(TABLE, rows, tmp_path / "work", echo=lines.append, root=ROOT)
    assert ok, "\n".join(lines)
    assert sum(line.startswith("OK") for line in lines) == len(rows)
    assert not list((tmp_path / "work").glob("group*/data/index/*/dense"))  # the dense index was never built
