"""evaluate: trec_eval numbers through the real stage functions, hand-computed values, error paths."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import pytrec_eval
import ranx

from rerank_lab.errors import ConfigError, InputError
from rerank_lab.evaluate import evaluate_runs, parse_metric, per_query, write_evaluation
from rerank_lab.io.qrels import write_qrels
from rerank_lab.io.trec import write_run

METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100")
TREC_KEYS = {"ndcg@10": "ndcg_cut_10", "recall@10": "recall_10", "recall@100": "recall_100"}

# Graded qrels: q4 is judged but missing from every run, q5 has only grade-0 judgments,
# q7 is in the split but has no qrels at all.
QRELS = {
    "q1": {"d1": 2, "d2": 1, "d3": 0},
    "q2": {"d4": 1},
    "q3": {"d5": 2, "d6": 2, "d7": 1},
    "q4": {"d8": 1},
    "q5": {"d9": 0},
    "q6": {"d10": 1, "d11": 2},
}
SPLIT_IDS = {"q1", "q2", "q3", "q4", "q5", "q6", "q7"}
EVALUATED = {"q1", "q2", "q3", "q4", "q6"}  # queries with at least one grade > 0


def _make_run(seed: int, placements: dict[str, dict[str, int]], n_docs: int = 40) -> dict[str, dict[str, float]]:
    """A run without ties: for each query, ``placements`` pins docs to 1-based ranks, fillers fill the rest."""
    rng = random.Random(seed)
    run = {}
    for qid, placed in placements.items():
        scores = sorted({rng.random() for _ in range(n_docs)}, reverse=True)
        assert len(scores) == n_docs  # distinct: no ties anywhere
        by_rank = {rank: did for did, rank in placed.items()}
        fillers = iter(f"{qid}-x{i:02d}" for i in range(n_docs))
        run[qid] = {by_rank.get(r) or next(fillers): scores[r - 1] for r in range(1, n_docs + 1)}
    return run


RUN_A = _make_run(
    1,
    {
        "q1": {"d2": 1, "d3": 2, "d1": 4},
        "q2": {"d4": 12},  # found, but outside the top 10
        "q3": {"d6": 3, "d7": 7},  # d5 (grade 2) not retrieved
        "q5": {"d9": 1},
        "q6": {"d11": 5, "d10": 30},
        "q7": {},
    },
)
RUN_B = _make_run(
    2,
    {
        "q1": {"d1": 1, "d2": 9},
        "q2": {"d4": 2},
        "q3": {"d5": 1, "d6": 11, "d7": 2},
        "q5": {},
        "q6": {"d10": 10, "d11": 40},  # d11 at the last rank
        "q7": {"d1": 3},
    },
)


@pytest.fixture
def stage(tmp_path: Path):
    """Write the runs and qrels as files, run evaluate_runs + write_evaluation, read the outputs back."""
    write_run(RUN_A, tmp_path / "runs" / "bm25" / "test.trec", tag="bm25")
    write_run(RUN_B, tmp_path / "runs" / "dense" / "test.trec", tag="dense")
    write_qrels(QRELS, tmp_path / "qrels" / "test.tsv")
    summary, rows = evaluate_runs([tmp_path / "runs"], tmp_path / "qrels", {"test": SPLIT_IDS}, METRICS, ("test",))
    write_evaluation(summary, rows, METRICS, tmp_path / "metrics.json", tmp_path / "eval")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    lines = (tmp_path / "eval" / "per_query.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    table = {}
    for line in lines[1:]:
        run, split, qid, *values = line.split("\t")
        assert split == "test"
        table[(run, qid)] = dict(zip(header[3:], map(float, values)))
    return metrics, header, table


def _direct(run: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """pytrec_eval called directly: nDCG/recall on the full run, recip_rank on the top 10 by score."""
    full = pytrec_eval.RelevanceEvaluator(QRELS, {"ndcg_cut.10", "recall.10", "recall.100"}).evaluate(run)
    top10 = {q: dict(sorted(d.items(), key=lambda kv: -kv[1])[:10]) for q, d in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(QRELS, {"recip_rank"}).evaluate(top10)
    out = {}
    for qid in EVALUATED:  # a judged query missing from the run scores 0 (trec_eval -c)
        values = {m: full.get(qid, {}).get(key, 0.0) for m, key in TREC_KEYS.items()}
        values["mrr@10"] = rr.get(qid, {}).get("recip_rank", 0.0)
        out[qid] = values
    return out


@pytest.mark.parametrize("name,run", [("bm25", RUN_A), ("dense", RUN_B)])
def test_stage_output_equals_pytrec_eval(stage, name, run):
    metrics, header, table = stage
    expected = _direct(run)
    assert header == ["run", "split", "query_id", *METRICS]
    assert {q for r, q in table if r == name} == EVALUATED
    for qid in EVALUATED:
        assert table[(name, qid)] == expected[qid], qid  # exact: per_query.tsv keeps full precision
    summary = metrics[name]["test"]
    assert summary["queries"] == 5
    assert summary["queries_without_relevant"] == 2  # q5 (grades 0 only) and q7 (no qrels)
    for m in METRICS:
        assert summary[m] == pytest.approx(sum(expected[q][m] for q in EVALUATED) / 5, abs=1e-6), m


def test_stage_values_by_hand_for_run_a(stage):
    """A few of RUN_A's values worked out by hand (rank r discount = 1/log2(r + 1))."""
    _, _, table = stage
    lg = math.log2
    # q1: d2 (grade 1) rank 1, d3 (grade 0) rank 2, d1 (grade 2) rank 4; ideal order d1, d2
    assert table[("bm25", "q1")]["ndcg@10"] == pytest.approx((1 + 2 / lg(5)) / (2 + 1 / lg(3)))
    assert table[("bm25", "q1")]["mrr@10"] == 1.0
    # q2: its only relevant doc at rank 12 -> nothing in the top 10, found by 100
    assert table[("bm25", "q2")] == {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@10": 0.0, "recall@100": 1.0}
    # q3: d6 (2) rank 3, d7 (1) rank 7, d5 (2) missing; ideal 2, 2, 1
    assert table[("bm25", "q3")]["ndcg@10"] == pytest.approx((2 / lg(4) + 1 / lg(8)) / (2 + 2 / lg(3) + 1 / lg(4)))
    assert table[("bm25", "q3")]["recall@10"] == pytest.approx(2 / 3)
    assert table[("bm25", "q3")]["mrr@10"] == pytest.approx(1 / 3)
    # q4: judged, missing from the run
    assert table[("bm25", "q4")] == {m: 0.0 for m in METRICS}
    # q6: d11 rank 5, d10 rank 30
    assert table[("bm25", "q6")]["recall@10"] == 0.5
    assert table[("bm25", "q6")]["recall@100"] == 1.0
    assert table[("bm25", "q6")]["mrr@10"] == pytest.approx(1 / 5)


@pytest.mark.parametrize("run", [RUN_A, RUN_B])
def test_means_agree_with_ranx(run):
    """A second, independent implementation: ranx on the same tie-free run (linear-gain nDCG)."""
    positive = {q: {d: g for d, g in docs.items() if g > 0} for q, docs in QRELS.items() if q in EVALUATED}
    ranx_run = {q: run.get(q, {}) for q in positive}
    want = ranx.evaluate(ranx.Qrels(positive), ranx.Run(ranx_run), ["ndcg@10", "recall@10", "recall@100", "mrr@10"])
    values = per_query(run, QRELS, METRICS)
    assert set(values) == EVALUATED
    for m in METRICS:
        assert sum(v[m] for v in values.values()) / len(values) == pytest.approx(want[m], abs=1e-9), m


# -- hand-computed values on tiny examples ---------------------------------------------------------


def test_one_relevant_doc_at_rank_two():
    values = per_query(
        {"q": {"x": 3.0, "a": 2.0, "y": 1.0}}, {"q": {"a": 1}}, ("ndcg@10", "mrr@10", "recall@1", "recall@2", "precision@2", "map@10")
    )
    assert values["q"]["ndcg@10"] == pytest.approx(1 / math.log2(3))  # 0.6309...
    assert values["q"]["mrr@10"] == 0.5
    assert values["q"]["recall@1"] == 0.0
    assert values["q"]["recall@2"] == 1.0
    assert values["q"]["precision@2"] == 0.5
    assert values["q"]["map@10"] == 0.5


def test_graded_ndcg_uses_linear_gain():
    # b (grade 1) first, a (grade 2) second: DCG = 1/1 + 2/log2(3); ideal = 2/1 + 1/log2(3)
    values = per_query({"q": {"b": 2.0, "a": 1.0}}, {"q": {"a": 2, "b": 1}}, ("ndcg@10",))
    assert values["q"]["ndcg@10"] == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))  # 0.8597...


def test_mrr_at_k_ignores_hits_below_k():
    run = {"q": {f"d{i:02d}": 100.0 - i for i in range(1, 21)}}  # d01 first ... d20 last
    values = per_query(run, {"q": {"d11": 1}}, ("mrr@10", "mrr@11", "mrr@20"))
    assert values["q"] == {"mrr@10": 0.0, "mrr@11": pytest.approx(1 / 11), "mrr@20": pytest.approx(1 / 11)}


def test_ties_are_cut_in_trec_eval_order_for_every_metric():
    """trec_eval breaks score ties by doc id descending; mrr@k's cut-off must see the same top k."""
    values = per_query({"q": {"a": 1.0, "b": 1.0}}, {"q": {"b": 1}}, ("ndcg@1", "precision@1", "mrr@1"))
    assert values["q"] == {"ndcg@1": 1.0, "precision@1": 1.0, "mrr@1": 1.0}


def test_per_query_keys_follow_the_requested_metric_order():
    values = per_query({"q": {"a": 1.0}}, {"q": {"a": 1}}, ("recall@5", "mrr@10", "ndcg@3"))
    assert list(values["q"]) == ["recall@5", "mrr@10", "ndcg@3"]


def test_missing_query_counts_zero_and_unjudged_queries_are_excluded(tmp_path):
    qrels = {
        "q1": {"a": 1},  # found at rank 2
        "q2": {"c": 1},  # judged, but not in the run: 0 on every metric
        "q3": {"d": 0},  # no relevant doc: left out of the means
    }
    run = {"q1": {"x": 3.0, "a": 2.0}, "q3": {"d": 1.0}}
    write_run(run, tmp_path / "runs" / "r" / "validation.trec", tag="r")
    write_qrels(qrels, tmp_path / "qrels" / "validation.tsv")
    summary, rows = evaluate_runs(
        [tmp_path / "runs"], tmp_path / "qrels", {"validation": {"q1", "q2", "q3"}}, ("ndcg@10", "mrr@10"), ("validation",)
    )
    assert summary == {
        "r": {
            "validation": {
                "ndcg@10": round(1 / math.log2(3) / 2, 6),  # (0.6309 + 0) / 2
                "mrr@10": 0.25,  # (1/2 + 0) / 2
                "queries": 2,
                "queries_without_relevant": 1,
                "false_evidence_rate": 1.0,  # q3 has nothing relevant, and the run answers it
            }
        }
    }
    assert [(r, s, q) for r, s, q, _ in rows] == [("r", "validation", "q1"), ("r", "validation", "q2")]
    assert rows[1][3] == {"ndcg@10": 0.0, "mrr@10": 0.0}


def test_only_unjudged_queries_give_zero_means(tmp_path):
    write_run({"q1": {"a": 1.0}}, tmp_path / "runs" / "r" / "test.trec", tag="r")
    write_qrels({"q1": {"a": 0}}, tmp_path / "qrels" / "test.tsv")
    summary, rows = evaluate_runs([tmp_path / "runs"], tmp_path / "qrels", {"test": {"q1", "q2"}}, ("ndcg@10",), ("test",))
    # q1 (answered) and q2 (not in the run) have no evidence: one of two answered
    assert summary == {"r": {"test": {"ndcg@10": 0.0, "queries": 0, "queries_without_relevant": 2, "false_evidence_rate": 0.5}}}
    assert rows == []


def test_a_tuned_system_that_abstained_on_every_query_scores_zero_while_an_empty_first_stage_is_refused(tmp_path):
    """tune writes what its system answers: abstaining on every query of a split is an empty run
    (nDCG 0, no false evidence), not a broken file -- an empty retrieval run still is one."""
    write_run({}, tmp_path / "runs" / "bm25+tuned" / "test.trec", tag="bm25+tuned")
    write_qrels({"q1": {"a": 1}, "q2": {"b": 0}}, tmp_path / "qrels" / "test.tsv")
    summary, rows = evaluate_runs([tmp_path / "runs"], tmp_path / "qrels", {"test": {"q1", "q2"}}, ("ndcg@10",), ("test",))
    assert summary == {"bm25+tuned": {"test": {"ndcg@10": 0.0, "queries": 1, "queries_without_relevant": 1, "false_evidence_rate": 0.0}}}
    assert rows == [("bm25+tuned", "test", "q1", {"ndcg@10": 0.0})]
    write_run({}, tmp_path / "runs" / "bm25" / "test.trec", tag="bm25")
    with pytest.raises(InputError, match=r"bm25/test\.trec: empty run file"):
        evaluate_runs([tmp_path / "runs"], tmp_path / "qrels", {"test": {"q1", "q2"}}, ("ndcg@10",), ("test",))


def test_split_without_a_run_file_is_skipped(tmp_path):
    write_run({"q1": {"a": 1.0}}, tmp_path / "runs" / "r" / "test.trec", tag="r")
    write_qrels({"q1": {"a": 1}}, tmp_path / "qrels" / "test.tsv")
    summary, _ = evaluate_runs(
        [tmp_path / "runs"], tmp_path / "qrels", {"test": {"q1"}, "validation": {"q9"}}, ("ndcg@10",), ("validation", "test")
    )
    assert summary == {"r": {"test": {"ndcg@10": 1.0, "queries": 1, "queries_without_relevant": 0}}}


# -- error paths ----------------------------------------------------------------------------------


def test_parse_metric():
    metric, k = parse_metric("recall@100")
    assert (metric.measure(k), metric.key(k)) == ("recall.100", "recall_100")
    metric, k = parse_metric("mrr@10")
    assert metric.truncate_run and metric.measure(k) == "recip_rank"


def test_unknown_metric_family_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown metric 'bleu' \(fix: use one of: map, mrr, ndcg, precision, recall\)"):
        parse_metric("bleu@10")


@pytest.mark.parametrize("name", ["ndcg", "ndcg10", "ndcg@", "NDCG@10", "ndcg@ 10", "ndcg@-1", "@10", "ndcg@10.5"])
def test_bad_metric_syntax(name):
    with pytest.raises(ConfigError, match=r"is not <name>@<k> \(fix: write e\.g\. ndcg@10"):
        parse_metric(name)


def test_metric_cut_off_zero():
    with pytest.raises(ConfigError, match=r"metric 'ndcg@0' needs k >= 1"):
        parse_metric("ndcg@0")


def test_bad_metric_is_reported_before_any_run_is_read(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown metric 'foo'"):
        evaluate_runs([tmp_path / "nothing-here"], tmp_path, {}, ("ndcg@10", "foo@5"), ("test",))


def test_run_naming_a_query_the_split_lacks(tmp_path):
    write_run({"q1": {"a": 1.0}, "q9": {"a": 1.0}}, tmp_path / "runs" / "r" / "test.trec", tag="r")
    write_qrels({"q1": {"a": 1}}, tmp_path / "qrels" / "test.tsv")
    with pytest.raises(InputError, match=r"test\.trec: query q9: run names query 'q9', which the test split lacks"):
        evaluate_runs([tmp_path / "runs"], tmp_path / "qrels", {"test": {"q1"}}, ("ndcg@10",), ("test",))


def test_no_runs_found(tmp_path):
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    with pytest.raises(InputError, match=r"no runs found \(fix: run the retrieve stage first\)"):
        evaluate_runs([tmp_path / "runs"], tmp_path, {}, ("ndcg@10",), ("test",))


def test_two_runs_with_one_name(tmp_path):
    for root in ("a", "b"):
        write_run({"q1": {"d": 1.0}}, tmp_path / root / "bm25" / "test.trec", tag="x")
    with pytest.raises(InputError, match=r"two runs are named 'bm25'"):
        evaluate_runs([tmp_path / "a", tmp_path / "b"], tmp_path, {}, ("ndcg@10",), ("test",))


def test_runs_without_any_asked_split_are_an_error_not_an_empty_file(tmp_path):
    """Before, evaluate wrote `{}` and exited 0 when no run had a file for the configured splits."""
    from rerank_lab.evaluate import evaluate_runs
    from rerank_lab.io.trec import write_run

    write_run({"q1": {"d1": 1.0}}, tmp_path / "runs" / "bm25" / "train.trec", tag="bm25")
    with pytest.raises(InputError, match=r"no run has a file for the split\(s\) validation, test \(fix: retrieve those splits"):
        evaluate_runs([tmp_path / "runs"], tmp_path / "qrels", {"train": {"q1"}}, ("ndcg@10",), ("validation", "test"))


def test_evaluate_command_writes_each_run_files_sha256(tmp_path):
    """runs.tsv: run, split, sha256 of the run file -- a byte-identical copy is the same system (the report's
    test-read accounting counts it once); a run that differs in one score is another."""
    import hashlib
    import shutil

    import datasets
    import yaml

    from rerank_lab.cli import cli
    from rerank_lab.io.datasets import save_dataset
    from rerank_lab.schema import to_dataset

    one = {"query": "x", "texts": ["Some text."], "context_spans": [[[0, 10]]], "labels": [1]}
    rows = [{"id": q, "text_ids": [f"{q}-rel"], **one} for q in ("q1", "q2")]
    save_dataset(datasets.DatasetDict({"test": to_dataset(rows)}), tmp_path / "dataset")
    write_qrels({"q1": {"q1-rel": 1}, "q2": {"q2-rel": 1}}, tmp_path / "qrels" / "test.tsv")
    write_run({"q1": {"q1-rel": 2.0, "d": 1.0}, "q2": {"q2-rel": 1.0}}, tmp_path / "runs" / "a" / "test.trec", tag="a")
    shutil.copytree(tmp_path / "runs" / "a", tmp_path / "runs" / "copy")
    write_run({"q1": {"q1-rel": 2.0, "d": 3.0}, "q2": {"q2-rel": 1.0}}, tmp_path / "runs" / "b" / "test.trec", tag="a")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"evaluate": {"metrics": ["ndcg@10"], "splits": ["validation", "test"]}}))
    args = ["evaluate", "--params", tmp_path / "params.yaml", "--runs", tmp_path / "runs", "--dataset", tmp_path / "dataset"]
    args += ["--qrels", tmp_path / "qrels", "--metrics", tmp_path / "evaluate.json", "--output", tmp_path / "out"]
    cli.main([str(a) for a in args], prog_name="rerank-lab", standalone_mode=False)
    sha = {r: hashlib.sha256((tmp_path / "runs" / r / "test.trec").read_bytes()).hexdigest() for r in ("a", "b")}
    lines = (tmp_path / "out" / "runs.tsv").read_text().splitlines()
    # one line per run file read (there are no validation files)
    assert lines == ["run\tsplit\tsha256", f"a\ttest\t{sha['a']}", f"b\ttest\t{sha['b']}", f"copy\ttest\t{sha['a']}"]
    assert sha["a"] != sha["b"]
