"""evaluate's paired comparison of every run with the reference runs, with Holm-adjusted p-values."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from statsmodels.stats.multitest import multipletests

from rerank_lab.cli import cli
from rerank_lab.config import EvaluateConfig
from rerank_lab.errors import ConfigError
from rerank_lab.evaluate import compare_to_baseline
from rerank_lab.io.datasets import save_dataset
from rerank_lab.schema import to_dataset
from rerank_lab.stats import paired_bootstrap, randomization_test

# per-query nDCG@10 of two runs on 6 test queries; "ce" beats "bm25" by 0.1 on five, loses 0.05 on one
BASE = {f"q{i}": v for i, v in enumerate([0.5, 0.6, 0.2, 0.9, 0.4, 0.3])}
BETTER = {"q0": 0.6, "q1": 0.7, "q2": 0.3, "q3": 0.85, "q4": 0.5, "q5": 0.4}


def _rows() -> list:
    return [("bm25", "test", q, {"ndcg@10": v}) for q, v in BASE.items()] + [("ce", "test", q, {"ndcg@10": v}) for q, v in BETTER.items()]


def test_every_other_run_gets_a_paired_comparison() -> None:
    summary = {"bm25": {"test": {"ndcg@10": 0.483333}}, "ce": {"test": {"ndcg@10": 0.558333}}}
    compare_to_baseline(summary, _rows(), "bm25", "ndcg@10", n_resamples=2000, seed=3)
    sig = summary["ce"]["test"]["vs_bm25"]
    assert "vs_bm25" not in summary["bm25"]["test"]
    assert sig["delta"] == pytest.approx((5 * 0.1 - 0.05) / 6, abs=1e-6)  # 0.075
    assert sig["ci_low"] <= sig["delta"] <= sig["ci_high"]
    # 6 queries: all 2^6 sign flips are enumerated. |sum| >= 0.45 needs the five 0.1s with one
    # sign (the 0.05 either way: 0.45 or 0.55), and the mirror images: 4 of 64 -> p = 0.0625
    assert sig["p_randomization"] == pytest.approx(4 / 64, abs=1e-6)
    assert sig["p_bootstrap"] == pytest.approx(paired_bootstrap(BASE, BETTER, 2000, 0.95, 3)["p_value"], abs=1e-6)
    assert sig["p_randomization"] == pytest.approx(randomization_test(BASE, BETTER, 2000, 3)["p_value"], abs=1e-6)


def test_unknown_baseline_lists_the_runs() -> None:
    with pytest.raises(ConfigError, match=r"baseline run 'dense' was not evaluated .*bm25, ce"):
        compare_to_baseline({"bm25": {}, "ce": {}}, _rows(), "dense", "ndcg@10")


def test_significance_metric_must_be_evaluated() -> None:
    with pytest.raises(ConfigError, match=r"^evaluate\.significance_metric: is not among evaluate\.metrics, got 'map@10'"):
        EvaluateConfig(metrics=("ndcg@10",), baseline="bm25", significance_metric="map@10")


def test_unknown_compare_also_names_its_setting() -> None:
    with pytest.raises(ConfigError, match=r"reference run 'dense' was not evaluated .*fix: set evaluate.compare_also to one of: bm25, ce"):
        compare_to_baseline({"bm25": {}, "ce": {}}, _rows(), "bm25", "ndcg@10", compare_also=("dense",))


# --- Holm-Bonferroni over every comparison on a split ----------------------------------------------

# "same" scores exactly like bm25: vs bm25 every difference is 0 (p = 1); vs ce it is bm25's comparison mirrored
SUMMARY = {"bm25": {"test": {}}, "ce": {"test": {}}, "same": {"test": {}}}


def _three_runs() -> list:
    return _rows() + [("same", "test", q, {"ndcg@10": v}) for q, v in BASE.items()]


def test_holm_family_of_one_reference() -> None:
    summary = json.loads(json.dumps(SUMMARY))
    compare_to_baseline(summary, _three_runs(), "bm25", "ndcg@10", n_resamples=2000, seed=3)
    ce, same = summary["ce"]["test"]["vs_bm25"], summary["same"]["test"]["vs_bm25"]
    # raw randomization p: ce 4/64 (see above), same 1. Holm over m = 2: 0.0625 * 2 = 0.125; max(1 * 1, 0.125) = 1
    assert (ce["p_randomization"], same["p_randomization"]) == (0.0625, 1.0)
    assert (ce["p_randomization_holm"], same["p_randomization_holm"]) == (0.125, 1.0)
    assert ce["holm_family"] == same["holm_family"] == 2
    raw_boot = [paired_bootstrap(BASE, run, 2000, 0.95, 3)["p_value"] for run in (BETTER, BASE)]
    assert raw_boot[1] == 1.0
    assert ce["p_bootstrap_holm"] == round(min(1.0, 2 * raw_boot[0]), 6)
    assert same["p_bootstrap_holm"] == 1.0


def test_holm_family_spans_all_references_and_counts_a_mirrored_pair_once() -> None:
    summary = json.loads(json.dumps(SUMMARY))
    compare_to_baseline(summary, _three_runs(), "bm25", "ndcg@10", n_resamples=2000, seed=3, compare_also=("ce",))
    test = {run: summary[run]["test"] for run in summary}
    assert sorted(k for run in test.values() for k in run) == ["vs_bm25", "vs_bm25", "vs_ce", "vs_ce"]
    # four comparisons, three hypotheses: {ce, bm25} (tested both ways: one hypothesis), {same, bm25}, {same, ce}.
    # raw randomization p 1/16, 1, 1/16 -> sorted 1/16, 1/16, 1 -> x3, x2, x1 = 3/16, 2/16, 1 -> running max 3/16, 3/16, 1
    assert test["ce"]["vs_bm25"]["p_randomization"] == test["bm25"]["vs_ce"]["p_randomization"] == 0.0625
    assert test["same"]["vs_ce"]["p_randomization"] == 0.0625
    assert test["ce"]["vs_bm25"]["p_randomization_holm"] == test["bm25"]["vs_ce"]["p_randomization_holm"] == 0.1875
    assert test["same"]["vs_ce"]["p_randomization_holm"] == 0.1875
    assert test["same"]["vs_bm25"]["p_randomization_holm"] == 1.0
    assert {e["holm_family"] for run in test.values() for e in run.values()} == {3}
    # the mirrored comparison really is the same test: delta and interval flip sign, p-values are equal
    there, back = test["ce"]["vs_bm25"], test["bm25"]["vs_ce"]
    assert (back["delta"], back["ci_low"], back["ci_high"]) == (-there["delta"], -there["ci_high"], -there["ci_low"])
    assert back["p_bootstrap"] == there["p_bootstrap"]


def _random_world(seed: int) -> tuple[list, dict]:
    """Four runs on 12 validation and 30 test queries, each a noisy shift of a shared base."""
    rng = np.random.default_rng(seed)
    rows, summary = [], {}
    for split, n in (("validation", 12), ("test", 30)):
        base = rng.uniform(0, 1, n)
        for run, shift in (("bm25", 0.0), ("dense", 0.02), ("ce", 0.08), ("tuned", 0.1)):
            values = np.clip(base + shift + rng.normal(0, 0.15, n), 0, 1)
            rows += [(run, split, f"q{i:02d}", {"ndcg@10": float(v)}) for i, v in enumerate(values)]
            summary.setdefault(run, {})[split] = {}
    return rows, summary


def test_holm_matches_statsmodels_per_split() -> None:
    rows, summary = _random_world(5)
    compare_to_baseline(summary, rows, "bm25", "ndcg@10", n_resamples=999, seed=1, compare_also=("ce",))
    per_run = {
        split: {run: {q: v["ndcg@10"] for r, s, q, v in rows if (r, s) == (run, split)} for run in summary}
        for split in ("validation", "test")
    }
    for split, systems in per_run.items():
        # the family of this split: bm25 vs dense/ce/tuned, ce vs dense/tuned ({bm25, ce} once) -> 5 hypotheses
        pairs = [("bm25", "ce"), ("bm25", "dense"), ("bm25", "tuned"), ("ce", "dense"), ("ce", "tuned")]
        raw_boot = [paired_bootstrap(systems[ref], systems[run], 999, 0.95, 1)["p_value"] for ref, run in pairs]
        raw_perm = [randomization_test(systems[ref], systems[run], 999, 1)["p_value"] for ref, run in pairs]
        want_boot, want_perm = multipletests(raw_boot, method="holm")[1], multipletests(raw_perm, method="holm")[1]
        for (ref, run), wb, wp, rb, rp in zip(pairs, want_boot, want_perm, raw_boot, raw_perm):
            entry = summary[run][split][f"vs_{ref}"]
            assert (entry["p_bootstrap"], entry["p_randomization"]) == (round(rb, 6), round(rp, 6))
            assert (entry["p_bootstrap_holm"], entry["p_randomization_holm"], entry["holm_family"]) == (round(wb, 6), round(wp, 6), 5)
        assert summary["bm25"][split]["vs_ce"]["p_randomization_holm"] == summary["ce"][split]["vs_bm25"]["p_randomization_holm"]
    # every split is its own family: the test-split numbers do not move when the validation split is left out
    only_test = [r for r in rows if r[1] == "test"]
    alone = {run: {"test": {}} for run in summary}
    compare_to_baseline(alone, only_test, "bm25", "ndcg@10", n_resamples=999, seed=1, compare_also=("ce",))
    assert alone == {run: {"test": summary[run]["test"]} for run in summary}


def test_evaluate_command_puts_every_reference_in_one_family(tmp_path: Path) -> None:
    """Through the CLI: evaluate.baseline and evaluate.compare_also share one Holm family per split."""
    ids = sorted(BASE)
    rows = [
        {"id": q, "query": "x", "texts": ["Some text."], "text_ids": [f"{q}-rel"], "context_spans": [[[0, 10]]], "labels": [1]} for q in ids
    ]
    save_dataset(datasets.DatasetDict({"test": to_dataset(rows)}), tmp_path / "dataset")
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{q}-rel\t1\n" for q in ids))
    # one relevant doc per query: nDCG@10 = 1 / log2(1 + its rank). bm25 (and "same") rank it 2nd everywhere;
    # ce ranks it 1st on five queries and 3rd on one -> the same sign pattern as BASE/BETTER: randomization p = 4/64
    ranks = {"bm25": [2] * 6, "same": [2] * 6, "ce": [1, 1, 1, 1, 1, 3]}
    for run, rank_of in ranks.items():
        folder = tmp_path / "runs" / run
        folder.mkdir(parents=True)
        lines = []
        for q, rank in zip(ids, rank_of):
            docs = [f"{q}-n{i}" for i in range(3)]
            docs.insert(rank - 1, f"{q}-rel")
            lines += [f"{q} Q0 {d} {i + 1} {10.0 - i} {run}\n" for i, d in enumerate(docs)]
        (folder / "test.trec").write_text("".join(lines))
    evaluate = {"metrics": ["ndcg@10"], "splits": ["test"], "baseline": "bm25", "compare_also": ["ce"], "n_resamples": 2000, "seed": 3}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"evaluate": evaluate}))
    args = ["evaluate", "--params", tmp_path / "params.yaml", "--runs", tmp_path / "runs", "--dataset", tmp_path / "dataset"]
    args += ["--qrels", tmp_path / "qrels", "--metrics", tmp_path / "evaluate.json", "--output", tmp_path / "per_query"]
    cli.main([str(a) for a in args], prog_name="rerank-lab", standalone_mode=False)
    out = json.loads((tmp_path / "evaluate.json").read_text())
    # as in test_holm_family_spans_all_references_and_counts_a_mirrored_pair_once: 3 hypotheses, not two families of 2
    assert out["ce"]["test"]["vs_bm25"]["p_randomization"] == 0.0625
    assert out["ce"]["test"]["vs_bm25"]["p_randomization_holm"] == out["bm25"]["test"]["vs_ce"]["p_randomization_holm"] == 0.1875
    assert out["same"]["test"]["vs_ce"]["p_randomization_holm"] == 0.1875
    assert out["same"]["test"]["vs_bm25"]["p_randomization_holm"] == 1.0
    assert {e["holm_family"] for run in out.values() for k, e in run["test"].items() if k.startswith("vs_")} == {3}
