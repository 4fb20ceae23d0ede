"""The real pipeline end to end: `dvc repro` on a tiny SciFact subset in a scratch copy."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rerank_lab.repro import prepare_copy, run_pipeline

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "data" / "raw" / "scifact_rationales"


def _claims(name: str) -> list[dict]:
    return [json.loads(line) for line in gzip.open(RAW / f"{name}.jsonl.gz", "rt")]


def _tiny_rationales(out: Path) -> Path:
    """SciFact with its own evidence: 12 evidence + 12 NOINFO train claims, 3 + 2 dev (= test)
    claims, their cited abstracts and 30 other abstracts."""
    out.mkdir(parents=True)
    wanted: set[int] = set()
    for name, n_evidence, n_noinfo in (("claims_train", 12, 12), ("claims_dev", 3, 2)):
        claims = _claims(name)
        kept = [c for c in claims if c["evidence"]][:n_evidence] + [c for c in claims if not c["evidence"]][:n_noinfo]
        wanted |= {d for c in kept for d in c["cited_doc_ids"]}
        (out / f"{name}.jsonl").write_text("".join(json.dumps(c) + "\n" for c in sorted(kept, key=lambda c: c["id"])))
    docs = [json.loads(line) for line in gzip.open(RAW / "corpus.jsonl.gz", "rt")]
    chosen = [d for d in docs if d["doc_id"] in wanted] + [d for d in docs if d["doc_id"] not in wanted][:30]
    (out / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in chosen))
    return out


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    raw = _tiny_rationales(tmp / "raw" / "tiny")
    overrides = {
        "datasets": ["tiny"],
        "convert.sources.tiny": {"format": "scifact_rationales", "validation_fraction": 0.5},
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
        "tune.n_trials": 20,
        "tune.epsilon": 0.5,
        "tune.top_k_retriever": [5, 20],
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
    assert (convert["train_queries"], convert["validation_queries"], convert["test_queries"]) == (12, 12, 5)
    assert convert["noinfo_claims"] == 14 and convert["corpus_docs"] >= 30


def test_evaluate_metrics_cover_every_run(pipeline: Path) -> None:
    metrics = json.loads((pipeline / "metrics/evaluate/tiny.json").read_text())
    assert sorted(metrics) == ["bm25", "bm25+ce", "bm25+ce+tuned", "bm25s", "dense", "rrf", "weighted"]
    for run, splits in metrics.items():
        test = splits["test"]
        # 3 test claims have evidence (nDCG, MRR, Recall); 2 NOINFO claims score the false-evidence rate
        assert (test["queries"], test["queries_without_relevant"]) == (3, 2)
        assert set(test) >= {"ndcg@10", "mrr@10", "recall@10", "recall@50", "recall@100", "recall@200", "false_evidence_rate"}
        if run not in ("bm25+ce", "bm25+ce+tuned"):  # untuned first stages answer every query
            assert test["false_evidence_rate"] == 1.0
            assert 0.3 < test["ndcg@10"] <= 1.0, (run, test)  # ~60 abstracts, evidence shares the claim's words
        if run != "bm25":
            assert set(test["vs_bm25"]) >= {"delta", "ci_low", "ci_high", "p_randomization"}
    tuned = metrics["bm25+ce+tuned"]["test"]
    assert 0.0 <= tuned["ece"] <= 1.0 and tuned["calibration_pairs"] == 5 * 5
    per_query = (pipeline / "data/evaluate/tiny/per_query.tsv").read_text().splitlines()
    assert per_query[0].split("\t")[:3] == ["run", "split", "query_id"]
    n_dev = metrics["bm25"]["validation"]["queries"]
    assert len(per_query) == 1 + 7 * (3 + n_dev)  # seven runs x has-evidence (test + validation) queries
    reliability = (pipeline / "data/evaluate/tiny/reliability.tsv").read_text().splitlines()
    assert reliability[0].startswith("run\tsplit\tprobability\tlow")


def test_tune_chooses_on_dev_and_respects_the_constraint(pipeline: Path) -> None:
    tune = json.loads((pipeline / "metrics/tune/tiny.json").read_text())
    assert tune["trials"] == 20 and tune["select_no_evidence"] >= 1 and tune["confirm_no_evidence"] >= 1
    assert tune["best_select_false_evidence"] <= 0.5
    best = json.loads((pipeline / "data/tune/tiny/best.json").read_text())
    assert best["run"] == "bm25+ce+tuned" and 1 <= best["top_k_rerank"] <= 5
    trials = (pipeline / "data/tune/tiny/trials.tsv").read_text().splitlines()
    assert len(trials) == 1 + 20
    assert len((pipeline / "data/tune/tiny/topk.tsv").read_text().splitlines()) == 1 + 5


def test_tune_rerun_continues_the_study(pipeline: Path, tmp_path: Path) -> None:
    """Run the stage command again on the same storage: same study, more trials, best not worse."""
    cmd = [
        sys.executable, "-m", "rerank_lab.cli", "tune",
        "--dataset", "data/convert/tiny/dataset", "--qrels", "data/convert/tiny/qrels",
        "--runs", "data/retrieve/tiny", "--scores", "data/score/tiny",
        "--storage", "sqlite:///.rerank-lab/optuna.db",
    ]  # fmt: skip
    first = json.loads((pipeline / "metrics/tune/tiny.json").read_text())
    out = tmp_path / "again"
    subprocess.run([*cmd, "--output", str(out / "tune"), "--metrics", str(out / "m.json")], cwd=pipeline, check=True)
    again = json.loads((out / "m.json").read_text())
    assert again["study"] == first["study"]
    assert again["trials"] == first["trials"] + 20 and again["trials_this_run"] == 20
    assert again["best_select_ndcg@10"] >= first["best_select_ndcg@10"]


def test_learning_stages_train_and_rerank(pipeline: Path) -> None:
    from sentence_transformers import CrossEncoder

    mine = json.loads((pipeline / "metrics/mine/tiny.json").read_text())
    # 3 mined per row, on top of the cited abstracts without evidence (label 0 already)
    assert mine["validation_rows"] == 12 and mine["validation_negatives"] >= 3 * 12
    assert mine["train_rows"] > 0 and mine["train_negatives"] >= 3 * mine["train_rows"]
    assert mine["train_rows_short_of_negatives"] == mine["validation_rows_short_of_negatives"] == 0
    train = json.loads((pipeline / "metrics/train/tiny.json").read_text())
    assert train["steps"] >= 2 and train["train_examples"] >= 4
    model = CrossEncoder(str(pipeline / "models/tiny/reranker"))
    assert model.predict([("a query", "a passage")]).shape == (1,)
    reranked = (pipeline / "data/score/tiny/bm25+ce/test.trec").read_text().splitlines()
    assert len(reranked) == 5 * 5  # top 5 of each of the 5 test claims
    assert (pipeline / "plots/train/tiny/loss.tsv").read_text().startswith("step\tloss")


def test_second_repro_reruns_nothing(pipeline: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=pipeline, capture_output=True, text=True, check=True).stdout
    assert "up to date" in out, out


def test_report_from_a_real_experiment(pipeline: Path) -> None:
    """Last test of the module (it turns the copy into a git repo): a real `dvc exp run` that
    changes a tune param (only tune and evaluate rerun), then `rerank-lab report` on that state."""
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t.invalid", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t.invalid",
    )  # fmt: skip

    def sh(*args: str) -> str:
        return subprocess.run(args, cwd=pipeline, env=env, check=True, capture_output=True, text=True).stdout

    (pipeline / ".gitignore").write_text("/data/*\n!/data/raw/\n/models/\n/.rerank-lab/\n")
    sh("git", "init", "-q", "-b", "main")
    sh(sys.executable, "-m", "dvc", "config", "core.no_scm", "false")
    sh("git", "add", "-A")
    sh("git", "commit", "-q", "-m", "tiny pipeline")
    out = sh(sys.executable, "-m", "dvc", "exp", "run", "-n", "loose-eps", "-S", "tune.epsilon=1.0")
    assert "Running stage 'tune@tiny'" in out and "Running stage 'train@tiny'" not in out  # only what the param reaches
    report = pipeline / "report"
    sh(sys.executable, "-m", "rerank_lab.cli", "report", "--output", str(report), "--base", "main")
    md = (report / "report.md").read_text()
    assert "loose-eps" in md and "## Metrics changed against `main`" in md and "tune.epsilon" in md
    for png in ("tiny-ndcg-vs-topk.png", "tiny-reliability.png", "tiny-optuna-history.png"):
        data = (report / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
        assert f"]({png})" in md
    board = (report / "leaderboard.csv").read_text().splitlines()
    assert board[0].startswith("experiment,rev,dataset,generator,reranker,regime,loss,negatives")
    # one combination (same generator, reranker, regime, loss, negatives) under two budgets: epsilon 0.5 and 1.0
    rows = list(csv.DictReader(board))
    assert sorted((r["experiment"], float(r["epsilon"])) for r in rows) == [("loose-eps", 1.0), ("main", 0.5)]
