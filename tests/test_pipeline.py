"""The real pipeline end to end: `dvc repro` on a tiny SciFact subset in a scratch copy."""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


# the tiny pipeline's params: small enough for a CPU test, every stage still real
TINY_OVERRIDES = {
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
    "late_train.max_queries": 4,
    "late_train.list_size": 4,
    "late_train.batch_size": 2,
    "late_train.document_length": 64,
    "score.top_k": 5,
    "rerankers.ce.max_length": 64,
    "tune.n_trials": 20,
    "tune.epsilon": 0.5,
    "tune.first_stages": ["bm25", "rrf"],  # tuned alone too: a retrieve run and a fuse run
    "tune.top_k_retriever": [5, 20],
}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    raw = _tiny_rationales(tmp / "raw" / "tiny")
    work = prepare_copy(ROOT, tmp / "work", TINY_OVERRIDES, raw={"tiny": raw}, share_cache=False)
    run_pipeline(work)
    return work


def _ranked(docs: dict[str, float]) -> list[str]:
    """trec_eval's order, written out here: score descending, ties by doc id descending."""
    return [d for d, _ in sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


def _ndcg_at(order: list[str], judged: dict[str, int], k: int) -> float:
    """nDCG@k with linear gains and log2 discounts, as trec_eval's ndcg_cut: computed by hand."""
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(order[:k]))
    ideal = sum(g / math.log2(i + 2) for i, g in enumerate(sorted((g for g in judged.values() if g > 0), reverse=True)[:k]))
    return dcg / ideal


def _recall_at(order: list[str], judged: dict[str, int], k: int) -> float:
    relevant = {d for d, g in judged.items() if g > 0}
    return len(relevant & set(order[:k])) / len(relevant)


def _qrels(path: Path) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for line in path.read_text().splitlines()[1:]:
        q, d, g = line.split("\t")
        out.setdefault(q, {})[d] = int(g)
    return out


def _trec(path: Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        q, _, d, _, s, _ = line.split()
        out.setdefault(q, {})[d] = float(s)
    return out


def test_convert_counts_match_the_raw_claims(pipeline: Path, tmp_path: Path) -> None:
    raw = {name: [json.loads(line) for line in (pipeline / "data/raw/tiny" / f"{name}.jsonl").read_text().splitlines()]
           for name in ("claims_train", "claims_dev")}  # fmt: skip
    convert = json.loads((pipeline / "metrics/convert/tiny.json").read_text())
    assert convert["train_queries"] + convert["validation_queries"] == len(raw["claims_train"]) == 24
    assert convert["test_queries"] == len(raw["claims_dev"]) == 5
    assert convert["noinfo_claims"] == sum(1 for c in raw["claims_train"] + raw["claims_dev"] if not c["evidence"]) == 14
    # no validation claim cites an abstract that a train claim cites: recomputed from the raw claims
    from rerank_lab.io.datasets import load_dataset

    dd = load_dataset(pipeline / "data/convert/tiny/dataset")
    cited = {str(c["id"]): {str(d) for d in c["cited_doc_ids"]} for c in raw["claims_train"]}
    train_docs = set().union(*(cited[q] for q in dd["train"]["id"]))
    assert not any(cited[q] & train_docs for q in dd["validation"]["id"])
    assert convert["validation_queries_sharing_train_docs"] == 0
    dedup = json.loads((pipeline / "metrics/dedup/tiny.json").read_text())
    assert dedup == {"max_duplicates": 3, "applied": 0}  # judged documents: scifact_rationales is not filtered
    for run in ("bm25", "bm25s", "dense"):
        assert sorted(p.name for p in (pipeline / "data/retrieve/tiny" / run).glob("*.trec")) == [
            "test.trec",
            "train.trec",
            "validation.trec",
        ]


def test_every_metric_matches_a_computation_by_hand(pipeline: Path) -> None:
    """Each run file's nDCG@10 and Recall@K, recomputed here from the file and the qrels without
    pytrec_eval, is what evaluate wrote; the no-evidence queries are those the qrels judge 0 only."""
    metrics = json.loads((pipeline / "metrics/evaluate/tiny.json").read_text())
    assert sorted(metrics) == ["bm25", "bm25+ce", "bm25+ce+tuned", "bm25+tuned", "bm25s", "dense", "rrf", "rrf+tuned", "weighted"]
    folders = {p.name: p for root in ("retrieve", "fuse", "score") for p in (pipeline / "data" / root / "tiny").iterdir() if p.is_dir()}
    folders |= {p.name: p for p in (pipeline / "data/tune/tiny/runs").iterdir()}
    for split in ("validation", "test"):
        qrels = _qrels(pipeline / "data/convert/tiny/qrels" / f"{split}.tsv")
        evidence = {q: j for q, j in qrels.items() if any(g > 0 for g in j.values())}
        for run, folder in folders.items():
            got, trec = metrics[run][split], _trec(folder / f"{split}.trec")
            assert (got["queries"], got["queries_without_relevant"]) == (len(evidence), len(qrels) - len(evidence))
            orders = {q: _ranked(trec.get(q, {})) for q in evidence}
            want = sum(_ndcg_at(orders[q], j, 10) for q, j in evidence.items()) / len(evidence)
            assert got["ndcg@10"] == pytest.approx(want, abs=1e-6), (run, split)
            for k in (10, 50, 100, 200):
                want = sum(_recall_at(orders[q], j, k) for q, j in evidence.items()) / len(evidence)
                assert got[f"recall@{k}"] == pytest.approx(want, abs=1e-6), (run, split, k)
            noinfo = [q for q in qrels if q not in evidence]
            assert got["false_evidence_rate"] == pytest.approx(sum(1 for q in noinfo if trec.get(q)) / len(noinfo), abs=1e-6)
            if run != "bm25":
                assert set(got["vs_bm25"]) >= {"delta", "ci_low", "ci_high", "p_randomization", "p_randomization_holm"}
                assert got["vs_bm25"]["p_randomization_holm"] >= got["vs_bm25"]["p_randomization"]
    tuned = metrics["bm25+ce+tuned"]["test"]
    assert 0.0 <= tuned["ece"] <= 1.0 and tuned["calibration_pairs"] == 5 * 5


def test_the_reranked_run_is_the_model_s_order_over_the_first_stage_head(pipeline: Path) -> None:
    """score reorders BM25's top 5 by the trained model's own scores (CrossEncoder.predict, not the
    pipeline's scoring engine) and keeps the rest of BM25's list below: Recall@K past the head is BM25's."""
    from sentence_transformers import CrossEncoder

    from rerank_lab.io.datasets import load_corpus, load_dataset
    from rerank_lab.schema import passage_text

    model = CrossEncoder(str(pipeline / "models/tiny/reranker"), device="cpu")
    corpus = {d["id"]: passage_text(d["title"], d["text"]) for d in load_corpus(pipeline / "data/convert/tiny/corpus")}
    queries = dict(zip(*(load_dataset(pipeline / "data/convert/tiny/dataset")["test"][c] for c in ("id", "query"))))
    bm25, reranked = (_trec(pipeline / "data" / p / "tiny" / r / "test.trec") for p, r in (("retrieve", "bm25"), ("score", "bm25+ce")))
    for qid, docs in bm25.items():
        first = _ranked(docs)
        order = _ranked(reranked[qid])
        assert set(order[:5]) == set(first[:5]) and order[5:] == first[5:]
        scores = model.predict([(queries[qid], corpus[d]) for d in order[:5]])
        assert list(scores) == sorted(scores, reverse=True), qid
    metrics = json.loads((pipeline / "metrics/evaluate/tiny.json").read_text())
    for k in (50, 100, 200):
        assert metrics["bm25+ce"]["test"][f"recall@{k}"] == metrics["bm25"]["test"][f"recall@{k}"]


def test_tune_chooses_on_dev_and_respects_the_constraint(pipeline: Path) -> None:
    tune = json.loads((pipeline / "metrics/tune/tiny.json").read_text())
    assert tune["trials"] == 20 and tune["select_no_evidence"] >= 1 and tune["confirm_no_evidence"] >= 1
    assert tune["best_select_false_evidence"] <= 0.5
    assert {"beats_untuned_on_confirm", "beats_first_stage_on_confirm", "meets_epsilon_on_confirm"} <= set(tune)
    best = json.loads((pipeline / "data/tune/tiny/best.json").read_text())
    assert best["run"] == "bm25+ce+tuned" and 1 <= best["top_k_rerank"] <= 5
    trials = (pipeline / "data/tune/tiny/trials.tsv").read_text().splitlines()
    assert len(trials) == 1 + 20
    assert len((pipeline / "data/tune/tiny/topk.tsv").read_text().splitlines()) == 1 + 5
    # the first stages tuned alone under the same epsilon, evaluated as runs of their own
    evaluated = json.loads((pipeline / "metrics/evaluate/tiny.json").read_text())
    for name in ("bm25", "rrf"):
        alone = tune["first_stages"][name]
        assert alone["trials"] == 20 and alone["best_select_false_evidence"] <= 0.5
        assert json.loads((pipeline / f"data/tune/tiny/first_stages/{name}/best.json").read_text())["run"] == f"{name}+tuned"
        assert "false_evidence_rate" in evaluated[f"{name}+tuned"]["test"]


def test_tune_rerun_gives_the_same_bytes(pipeline: Path, tmp_path: Path) -> None:
    """The stage command run again on the same inputs: a fresh seeded study, identical outputs
    (before, the study lived in .rerank-lab/optuna.db and each run added trials)."""
    cmd = [
        sys.executable, "-m", "rerank_lab.cli", "tune",
        "--dataset", "data/convert/tiny/dataset", "--qrels", "data/convert/tiny/qrels",
        "--runs", "data/retrieve/tiny", "--runs", "data/fuse/tiny", "--scores", "data/score/tiny",
    ]  # fmt: skip
    out = tmp_path / "again"
    subprocess.run([*cmd, "--output", str(out / "tune"), "--metrics", str(out / "m.json")], cwd=pipeline, check=True, capture_output=True)
    assert (out / "m.json").read_bytes() == (pipeline / "metrics/tune/tiny.json").read_bytes()
    first = pipeline / "data/tune/tiny"
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out / "tune") for p in (out / "tune").rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (out / "tune" / f).read_bytes() for f in files)
    assert not (pipeline / ".rerank-lab" / "optuna.db").exists()


def test_learning_stages_train_and_rerank(pipeline: Path) -> None:
    mine = json.loads((pipeline / "metrics/mine/tiny.json").read_text())
    convert = json.loads((pipeline / "metrics/convert/tiny.json").read_text())
    # 3 mined per row, on top of the cited abstracts without evidence (label 0 already)
    assert mine["validation_rows"] == convert["validation_queries"] and mine["validation_negatives"] >= 3 * mine["validation_rows"]
    assert mine["train_rows"] == convert["train_queries"] and mine["train_negatives"] >= 3 * mine["train_rows"]
    assert mine["train_rows_short_of_negatives"] == mine["validation_rows_short_of_negatives"] == 0
    train = json.loads((pipeline / "metrics/train/tiny.json").read_text())
    # listwise: one list per positive of the first 4 train rows with evidence; 2 lists a step, 1 epoch
    assert train["steps"] == math.ceil(train["train_examples"] / 2) >= 2
    assert {"dev_mined_ndcg@10", "dev_mined_mrr@10"} <= set(train)
    assert (pipeline / "plots/train/tiny/loss.tsv").read_text().startswith("step\tloss")


def test_second_repro_reruns_nothing(pipeline: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=pipeline, capture_output=True, text=True, check=True).stdout
    assert "up to date" in out, out


def _out_hashes(lock: Path) -> dict[str, str]:
    stages = yaml.safe_load(lock.read_text())["stages"]
    return {f"{name}:{out['path']}": out.get("md5", "") for name, stage in stages.items() for out in stage.get("outs", [])}


@pytest.mark.slow  # a second whole repro (~2 min): `make test-slow`
def test_forced_repro_gives_identical_outputs(pipeline: Path) -> None:
    """`dvc repro --force` on unchanged inputs: every stage's outputs hash as before, tune and the
    indexes included -- no stage's output depends on anything but its declared deps and params."""
    before = _out_hashes(pipeline / "dvc.lock")
    run_pipeline(pipeline, args=("--force",))
    after = _out_hashes(pipeline / "dvc.lock")
    assert len(before) >= 20  # every stage of the tiny grid, metrics files included
    assert {k: (before[k], after.get(k)) for k in before if before[k] != after.get(k)} == {}


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
    assert board[0].startswith("experiment,rev,dataset,trained_on,generator,reranker,regime,loss,negatives")
    # one combination (same generator, reranker, regime, loss, negatives) under two budgets: epsilon 0.5 and 1.0
    rows = list(csv.DictReader(board))
    assert sorted((r["experiment"], float(r["epsilon"])) for r in rows) == [("loose-eps", 1.0), ("main", 0.5)]
