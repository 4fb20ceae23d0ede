"""remove_query (pyserini's ``--remove-query``): the hit whose doc id is the query id never appears,
and the run still holds ``depth`` hits, for the library function and the ``retrieve`` command."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml

from rerank_lab.cli import cli
from rerank_lab.config import ConvertConfig
from rerank_lab.io.trec import read_run
from rerank_lab.retrieve import search
from rerank_lab.retrievers.bm25_bm25s import Bm25sBM25

# ArguAna-like: the query "a1" is itself document "a1", which therefore always ranks first
DOCS = {
    "a1": "glaciers melt fast",
    "a2": "glaciers melt",
    "a3": "glaciers",
    "a4": "rivers flood the valley",
}
QUERIES = {"a1": "glaciers melt fast"}


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bm25s")
    Bm25sBM25().index(list(DOCS), list(DOCS.values()), out)
    return out


def test_without_remove_query_the_query_doc_ranks_first(index):
    run = search(Bm25sBM25(), index, QUERIES, depth=2)
    assert sorted(run["a1"], key=run["a1"].get, reverse=True) == ["a1", "a2"]


def test_remove_query_drops_it_and_keeps_depth_hits(index):
    run = search(Bm25sBM25(), index, QUERIES, depth=2, remove_query=True)
    # a1 matches all three terms, a2 two, a3 one: without a1 the top 2 are a2, a3
    assert sorted(run["a1"], key=run["a1"].get, reverse=True) == ["a2", "a3"]


def test_remove_query_leaves_other_queries_alone(index):
    run = search(Bm25sBM25(), index, {"zz": "glaciers melt fast"}, depth=2, remove_query=True)
    assert sorted(run["zz"], key=run["zz"].get, reverse=True) == ["a1", "a2"]


def test_convert_config_defaults_to_keeping_every_hit():
    assert ConvertConfig(format="beir").remove_query is False


# -- the retrieve command reads convert.sources.<dataset>.remove_query ------------------------------


def _beir(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "corpus.jsonl.gz").write_bytes(
        gzip.compress("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in DOCS.items()).encode(), mtime=0)
    )
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items()))
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\na1\ta2\t1\n")
    return root


def _run(*args) -> None:
    cli.main([str(a) for a in args], prog_name="rerank-lab", standalone_mode=False)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    """A tiny BEIR source converted and indexed through the commands dvc.yaml runs."""
    tmp = tmp_path_factory.mktemp("pipeline")
    params = {
        "convert": {"seed": 1, "sources": {"tiny": {"format": "beir", "remove_query": True}, "plain": {"format": "beir"}}},
        "retrieve": {"depth": 2, "splits": ["test"]},
        "retrievers": {"bm25s": {"type": "bm25-bm25s"}},
    }
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    p = ("--params", tmp / "params.yaml")
    _run("convert", *p, "--source", "tiny", "--input", _beir(tmp / "raw"), "--output", tmp / "convert", "--metrics", tmp / "m.json")
    _run("index", *p, "--retriever", "bm25s", "--corpus", tmp / "convert" / "corpus", "--output", tmp / "index")
    return tmp


@pytest.mark.parametrize(("source", "expected"), [("tiny", ["a2", "a3"]), ("plain", ["a1", "a2"]), (None, ["a1", "a2"])])
def test_retrieve_command_applies_the_sources_setting(pipeline, source, expected):
    out = pipeline / f"run-{source}"
    args = ["retrieve", "--params", pipeline / "params.yaml", "--retriever", "bm25s", "--index", pipeline / "index"]
    args += ["--dataset", pipeline / "convert" / "dataset", "--output", out] + (["--source", source] if source else [])
    _run(*args)
    lines = (out / "test.trec").read_text().splitlines()
    assert [line.split()[2] for line in lines] == expected
    assert list(read_run(out / "test.trec")) == ["a1"]
