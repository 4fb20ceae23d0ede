"""The reproduction table: its rows parse, bad rows are clear errors, and (slow) it reproduces."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rerank_lab.errors import ConfigError, InputError
from rerank_lab.repro import _set, check_table, load_table

ROOT = Path(__file__).resolve().parents[1]


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
