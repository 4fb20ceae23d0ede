"""The real pipeline end to end: `dvc repro` on a tiny SciFact subset in a scratch copy."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rerank_lab.repro import prepare_copy, run_pipeline

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "data" / "raw" / "scifact"


def _tiny_scifact(out: Path) -> Path:
    """6 train and 4 test queries of SciFact, their relevant docs and 30 other docs."""
    qrels = {split: (RAW / "qrels" / f"{split}.tsv").read_text().splitlines() for split in ("train", "test")}
    keep_q = {
        "train": [line.split("\t")[0] for line in qrels["train"][1:]][:6],
        "test": [line.split("\t")[0] for line in qrels["test"][1:]][:4],
    }
    wanted_docs: set[str] = set()
    (out / "qrels").mkdir(parents=True)
    for split, lines in qrels.items():
        kept = [line for line in lines[1:] if line.split("\t")[0] in keep_q[split]]
        wanted_docs |= {line.split("\t")[1] for line in kept}
        (out / "qrels" / f"{split}.tsv").write_text("\n".join([lines[0], *kept]) + "\n")
    docs = [json.loads(line) for line in gzip.open(RAW / "corpus.jsonl.gz", "rt")]
    chosen = [d for d in docs if d["_id"] in wanted_docs] + [d for d in docs if d["_id"] not in wanted_docs][:30]
    (out / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in chosen))
    queries = [json.loads(line) for line in gzip.open(RAW / "queries.jsonl.gz", "rt")]
    all_q = set(keep_q["train"]) | set(keep_q["test"])
    (out / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries if q["_id"] in all_q))
    return out


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    raw = _tiny_scifact(tmp / "raw" / "tiny")
    overrides = {
        "datasets": ["tiny"],
        "convert.sources.tiny": {"format": "beir", "validation_fraction": 0.34},
        "retrieve.depth": 20,
        "miners.mixed.range_min": 2,
        "mine.num_negatives": 3,
        "train.max_queries": 4,
        "train.list_size": 4,
        "train.batch_size": 2,
        "train.max_length": 64,
        "train.max_dev_queries": 2,
        "score.top_k": 5,
        "score.max_length": 64,
    }
    work = prepare_copy(ROOT, tmp / "work", overrides, raw={"tiny": raw}, share_cache=False)
    run_pipeline(work)
    return work


def test_repro_writes_every_stage_output(pipeline: Path) -> None:
    for out in ("data/convert/tiny/dataset", "data/convert/tiny/corpus", "data/dedup/tiny", "data/index/tiny/dense/embeddings.npy"):
        assert (pipeline / out).exists(), out
    for run in ("bm25", "bm25s", "dense"):
        assert sorted(p.name for p in (pipeline / "data/retrieve/tiny" / run).glob("*.trec")) == [
            "test.trec",
            "train.trec",
            "validation.trec",
        ]
    assert (pipeline / "dvc.lock").is_file()
    convert = json.loads((pipeline / "metrics/convert/tiny.json").read_text())
    assert (convert["train_queries"], convert["validation_queries"], convert["test_queries"]) == (4, 2, 4)
    assert convert["corpus_docs"] >= 30


def test_evaluate_metrics_cover_every_run(pipeline: Path) -> None:
    metrics = json.loads((pipeline / "metrics/evaluate/tiny.json").read_text())
    assert sorted(metrics) == ["bm25", "bm25+ce", "bm25s", "dense", "rrf", "weighted"]
    for run, splits in metrics.items():
        test = splits["test"]
        assert test["queries"] == 4
        assert set(test) >= {"ndcg@10", "mrr@10", "recall@10", "recall@100"}
        # ~40 documents, and each query's relevant doc shares its topic: every run finds them
        if run != "bm25+ce":  # the reranker trained on 4 queries for 2 steps may be anywhere
            assert 0.5 < test["ndcg@10"] <= 1.0, (run, test)
    per_query = (pipeline / "data/evaluate/tiny/per_query.tsv").read_text().splitlines()
    assert per_query[0].split("\t")[:3] == ["run", "split", "query_id"]
    assert len(per_query) == 1 + 6 * (4 + 2)  # six runs x (test + validation queries)


def test_learning_stages_train_and_rerank(pipeline: Path) -> None:
    from sentence_transformers import CrossEncoder

    mine = json.loads((pipeline / "metrics/mine/tiny.json").read_text())
    assert mine["train_negatives"] == 3 * 4 and mine["validation_negatives"] == 3 * 2
    train = json.loads((pipeline / "metrics/train/tiny.json").read_text())
    assert train["steps"] >= 2 and train["train_examples"] >= 4
    model = CrossEncoder(str(pipeline / "models/tiny/reranker"))
    assert model.predict([("a query", "a passage")]).shape == (1,)
    reranked = (pipeline / "data/score/tiny/bm25+ce/test.trec").read_text().splitlines()
    assert len(reranked) == 4 * 5  # top 5 of each of the 4 test queries
    assert (pipeline / "plots/train/tiny/loss.tsv").read_text().startswith("step\tloss")


def test_second_repro_reruns_nothing(pipeline: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=pipeline, capture_output=True, text=True, check=True).stdout
    assert "up to date" in out, out
