"""report: seed groups (mean ± std, paired test on seed-averaged per-query values) and test-read accounting.

Pure functions on hand-made inputs, then a real git + DVC repository whose one stage writes evaluate's
and tune's outputs from ``train.seed`` / ``train.loss``; experiments are run with ``dvc exp run -S``
and the report reads their per-query values back through DVC at each experiment's commit.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from rerank_lab.errors import InputError
from rerank_lab.report import build_report
from rerank_lab.report.reads import TestReads
from rerank_lab.report.revs import parse_per_query, parse_run_hashes
from rerank_lab.report.seeds import averaged, group_key, mean_std, seed_groups
from tests.dvc_toy import DVC, GIT_ENV, commit_toy_pipeline, run

# --- mean ± std, averaging, grouping ------------------------------------------------------------


def test_mean_and_sample_std_by_hand():
    # mean 0.52; deviations -0.02, +0.02, 0 -> sample variance (0.0004 + 0.0004) / (3 - 1) = 0.0004 -> std 0.02
    assert mean_std([0.50, 0.54, 0.52]) == (0.52, 0.02)
    assert mean_std([0.425, 0.4, 0.45]) == (0.425, 0.025)
    assert mean_std([0.7]) == (0.7, None)  # one seed: no spread to show
    assert mean_std([None, 0.3, None]) == (0.3, None)
    assert mean_std([]) == (None, None)


def test_averaged_per_query_and_refuses_different_queries():
    assert averaged([{"q1": 0.5, "q2": 0.6}, {"q2": 0.5, "q1": 0.6}, {"q1": 0.4, "q2": 0.7}]) == {"q1": 0.5, "q2": 0.6}
    with pytest.raises(InputError, match=r"^query q2: the members of a seed group score different test queries"):
        averaged([{"q1": 0.5, "q2": 0.6}, {"q1": 0.5, "q3": 0.6}])


def _rec(name: str, kind: str = "experiment", **params) -> dict:
    return {"name": name, "rev": name * 3, "kind": kind, "params": {"train.loss": "listnet", "train.seed": 1, **params}, "metrics": {}}


def test_seed_groups_differ_only_in_seed_one_member_per_seed():
    recs = [
        _rec("ws", kind="workspace", **{"train.seed": 3}),  # repeats exp c (seed 3): not a fourth member
        _rec("a"),
        _rec("b", **{"train.seed": 2}),
        _rec("c", **{"train.seed": 3}),
        _rec("r", **{"train.loss": "ranknet"}),  # another loss: its own group
        _rec("d", **{"train.seed": 2, "tune.epsilon": 1}),  # another param too: its own group
        _rec("a2"),  # seed 1 again (e.g. an older commit's run): the first listed stays
    ]
    sourced = [(rec, {"experiment": rec["name"], "dataset": "toy"}) for rec in recs]
    sourced.append((_rec("x"), {"experiment": "x-other-ds", "dataset": "other"}))  # same params, another dataset
    groups = seed_groups(sourced)
    assert [[row["experiment"] for _, row in g] for g in groups] == [["a", "b", "c"], ["r"], ["d"], ["x-other-ds"]]
    assert group_key({"train.seed": 1, "x": 1}, "toy") == group_key({"train.seed": 9, "x": 1}, "toy")
    assert group_key({"train.seed": 1, "x": 1}, "toy") != group_key({"train.seed": 1, "x": 2}, "toy")
    # the workspace joins when no commit has its seed
    lone = seed_groups([(_rec("ws", kind="workspace", **{"train.seed": 4}), {"experiment": "ws", "dataset": "toy"}), sourced[1]])
    assert [[row["experiment"] for _, row in g] for g in lone] == [["a", "ws"]]  # sorted by seed: 1, 4


def test_parse_revision_files():
    text = "run\tsplit\tquery_id\tndcg@10\trecall@100\nbm25\ttest\tq1\t0.5\t1.0\nbm25\ttest\tq2\t0.25\t0.0\n"
    assert parse_per_query(text) == {
        ("bm25", "test"): {"q1": {"ndcg@10": 0.5, "recall@100": 1.0}, "q2": {"ndcg@10": 0.25, "recall@100": 0.0}}
    }
    with pytest.raises(InputError, match=r"^per_query.tsv: line 2: expected 5 columns of numbers"):
        parse_per_query("run\tsplit\tquery_id\tndcg@10\trecall@100\nbm25\ttest\tq1\t0.5\n")
    with pytest.raises(InputError, match="not a per-query table"):
        parse_per_query("a\tb\n")
    assert parse_run_hashes("run\tsplit\tsha256\nbm25\ttest\taa\nbm25\tvalidation\tbb\n") == {
        ("bm25", "test"): "aa",
        ("bm25", "validation"): "bb",
    }


# --- test-read accounting -----------------------------------------------------------------------


def _ev(p_tuned: float, p_ce: float | None = None) -> dict:
    """metrics/evaluate: bm25, bm25+ce and the tuned system on test, compared with bm25 (and ce with tuned)."""
    tuned = {"ndcg@10": 0.6, "vs_bm25": {"metric": "ndcg@10", "p_randomization": p_tuned}}
    out = {"bm25": {"test": {"ndcg@10": 0.5}, "validation": {"ndcg@10": 0.5}}, "bm25+ce+tuned": {"test": tuned}}
    if p_ce is not None:
        out["bm25+ce"] = {"test": {"ndcg@10": 0.55, "vs_bm25": {"metric": "ndcg@10", "p_randomization": p_ce}}}
        out["bm25"]["test"]["vs_bm25+ce"] = {"metric": "ndcg@10", "p_randomization": p_ce}  # the mirrored pair: one test
    return out


def test_test_reads_dedupe_identical_run_files_and_adjust_over_the_family():
    reads = TestReads()
    shared = {("bm25", "test"): "h-bm25", ("bm25+ce", "test"): "h-ce"}
    k1 = reads.add_evaluation("toy", "rev1", _ev(0.01, 0.04), {**shared, ("bm25+ce+tuned", "test"): "h-t1"})
    k2 = reads.add_evaluation("toy", "rev2", _ev(0.02, 0.04), {**shared, ("bm25+ce+tuned", "test"): "h-t2"})
    # the workspace repeating rev2: same files, nothing new
    k3 = reads.add_evaluation("toy", "workspace", _ev(0.02, 0.04), {**shared, ("bm25+ce+tuned", "test"): "h-t2"})
    # an old revision without runs.tsv: each of its runs is a system of its own
    k4 = reads.add_evaluation("toy", "old", _ev(0.03), {})
    assert k2[("bm25+ce+tuned", "bm25")] == k3[("bm25+ce+tuned", "bm25")] != k1[("bm25+ce+tuned", "bm25")]
    assert k1[("bm25+ce", "bm25")] == k1[("bm25", "bm25+ce")] == k2[("bm25+ce", "bm25")]  # one pair, both ways, every rev
    s = reads.summary()
    # reads: 3 + 3 + 3 + 2; systems: h-bm25, h-ce, h-t1, h-t2, old's bm25 and old's tuned
    assert (s["test_reads"], s["distinct_systems"], s["unhashed_reads"]) == (11, 6, 2)
    # family: t1 vs bm25 (0.01), t2 vs bm25 (0.02), ce vs bm25 (0.04), old tuned vs old bm25 (0.03)
    assert (s["family"], s["family_evaluate"]) == (4, 4)
    seeds = reads.add(("seeds", "g"), 0.25, "seeds")
    assert reads.add(("groups", "g", "h"), None, "groups") == ("groups", "g", "h")  # no p-value: not a test
    adjusted = reads.adjusted()
    # Holm by hand over 0.01, 0.02, 0.03, 0.04, 0.25: 0.05, 0.08, 0.09, max(0.09, 0.08), 0.25
    assert adjusted[k1[("bm25+ce+tuned", "bm25")]] == pytest.approx(0.05)
    assert adjusted[k2[("bm25+ce+tuned", "bm25")]] == pytest.approx(0.08)
    assert adjusted[k4[("bm25+ce+tuned", "bm25")]] == pytest.approx(0.09)
    assert adjusted[k1[("bm25+ce", "bm25")]] == pytest.approx(0.09)
    assert adjusted[seeds] == pytest.approx(0.25)
    assert "**6 distinct systems** have been evaluated on test across the 4 ranked" in reads.describe(4)
    assert "2 of those reads had no run hash" in reads.describe(4)


# --- a real git + DVC repository ----------------------------------------------------------------


# Per-query test nDCG@10 of the tuned system by (loss, seed); the first stage is the same file everywhere.
# listnet, averaged over seeds 1-3: q0 (0.5+0.6+0.4)/3 = 0.5, q1 0.6, q2 0.3, q3 0.3.
STAGE = """
import json, os, yaml
p = yaml.safe_load(open("params.yaml"))
loss, seed = p["train"]["loss"], p["train"]["seed"]
first = [0.2, 0.4, 0.1, 0.3]
tuned = {("listnet", 1): [0.5, 0.6, 0.4, 0.2], ("listnet", 2): [0.6, 0.5, 0.1, 0.4], ("listnet", 3): [0.4, 0.7, 0.4, 0.3],
         ("ranknet", 1): [0.3, 0.3, 0.3, 0.3]}[(loss, seed)]
confirm = {("listnet", 1): 0.50, ("listnet", 2): 0.54, ("listnet", 3): 0.52, ("ranknet", 1): 0.45}[(loss, seed)]
p_raw = {("listnet", 1): 0.01, ("listnet", 2): 0.02, ("listnet", 3): 0.03, ("ranknet", 1): 0.04}[(loss, seed)]
mean = lambda xs: sum(xs) / len(xs)
ev = {"bm25": {"test": {"ndcg@10": mean(first), "recall@100": 0.8}},
      "bm25+ce+tuned": {"test": {"ndcg@10": mean(tuned), "false_evidence_rate": 0.1 * seed, "recall@100": 0.9,
                                 "vs_bm25": {"metric": "ndcg@10", "delta": mean(tuned) - mean(first), "ci_low": 0.0,
                                             "ci_high": 0.1, "p_randomization": p_raw}}}}
for d in ("metrics/evaluate", "metrics/tune", "data/evaluate/toy"):
    os.makedirs(d, exist_ok=True)
json.dump(ev, open("metrics/evaluate/toy.json", "w"))
json.dump({"best": {}, "best_confirm_ndcg@10": confirm}, open("metrics/tune/toy.json", "w"))
rows = [f"bm25\\ttest\\tq{i}\\t{v!r}" for i, v in enumerate(first)]
rows += [f"bm25+ce+tuned\\ttest\\tq{i}\\t{v!r}" for i, v in enumerate(tuned)]
open("data/evaluate/toy/per_query.tsv", "w").write("run\\tsplit\\tquery_id\\tndcg@10\\n" + "\\n".join(rows) + "\\n")
hashes = f"bm25\\ttest\\th-bm25\\nbm25+ce+tuned\\ttest\\th-{loss}-{seed}\\n"
open("data/evaluate/toy/runs.tsv", "w").write("run\\tsplit\\tsha256\\n" + hashes)
"""


def test_report_groups_seeds_and_counts_test_reads_in_a_real_dvc_repo(tmp_path: Path, monkeypatch):
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)
    repo = tmp_path
    params = {
        "datasets": ["toy"],
        "mine": {"miner": "mixed"},
        "train": {"model": "m", "regime": "listwise", "loss": "listnet", "seed": 1},
        "score": {"name": "ce"},
        "tune": {"run": "bm25", "epsilon": 0.5},
        "evaluate": {"baseline": "bm25", "significance_metric": "ndcg@10", "n_resamples": 1000, "seed": 0},
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    stage = {
        "cmd": f"{shlex.quote(sys.executable)} -c {shlex.quote(f'exec({STAGE!r})')}",
        "params": ["train.seed", "train.loss"],
        "outs": ["data/evaluate/toy"],
        "metrics": [{"metrics/evaluate/toy.json": {"cache": False}}, {"metrics/tune/toy.json": {"cache": False}}],
    }
    commit_toy_pipeline(repo, stage, "toy")
    # each run starts from the workspace, which holds the previous run's params: set both
    for name, loss, seed in (("s2", "listnet", 2), ("s3", "listnet", 3), ("rank", "ranknet", 1)):
        run([*DVC, "exp", "run", "-q", "-n", name, "-S", f"train.loss={loss}", "-S", f"train.seed={seed}"], repo)

    written = build_report(repo, repo / "report", base="main")

    groups = json.loads((repo / "report" / "seed_groups.json").read_text())
    assert [(g["experiments"], g["n"], g["seeds"]) for g in groups] == [("main, s2, s3", 3, "1, 2, 3"), ("rank", 1, "1")]
    listnet, ranknet = groups
    # mean ± sample std by hand: confirm 0.50/0.54/0.52; test nDCG@10 per seed 0.425, 0.4, 0.45
    assert (listnet["dev_confirm_ndcg@10"], listnet["dev_confirm_ndcg@10_std"]) == (0.52, 0.02)
    assert (listnet["test_ndcg@10"], listnet["test_ndcg@10_std"]) == (pytest.approx(0.425), pytest.approx(0.025))
    assert (listnet["test_false_evidence"], listnet["test_false_evidence_std"]) == (pytest.approx(0.2), pytest.approx(0.1))
    # seed-averaged tuned 0.5, 0.6, 0.3, 0.3 minus the first stage 0.2, 0.4, 0.1, 0.3 = 0.3, 0.2, 0.2, 0.0: mean 0.175;
    # exact sign flips (16): |sum| >= 0.7 only with all three non-zero signs equal -> 2 patterns x 2 signs of the 0 = 4/16
    assert listnet["test_delta_vs_first_stage"] == 0.175
    assert listnet["test_p_vs_first_stage"] == 0.25
    assert (ranknet["dev_confirm_ndcg@10"], ranknet["dev_confirm_ndcg@10_std"]) == (0.45, None)
    assert ranknet["test_p_vs_first_stage"] == 0.04  # one seed: evaluate's own test
    # groups against the best (listnet): ranknet 0.3 x 4 minus 0.5, 0.6, 0.3, 0.3 = -0.2, -0.3, 0, 0 -> mean -0.125;
    # |sum| >= 0.5 needs both non-zero signs equal: 2 x 4 of 16 = 0.5
    assert (ranknet["vs_best_group"], ranknet["test_delta_vs_best_group"], ranknet["test_p_vs_best_group"]) == ("main", -0.125, 0.5)

    # test reads: bm25 (one file everywhere) + four tuned systems; the workspace repeats "rank"
    reads = json.loads((repo / "report" / "test_reads.json").read_text())
    assert (reads["test_reads"], reads["distinct_systems"], reads["unhashed_reads"]) == (10, 5, 0)
    assert (reads["family"], reads["family_evaluate"], reads["family_seeds"], reads["family_groups"]) == (6, 4, 1, 1)
    assert written["distinct_systems"] == 5
    # Holm over 0.01, 0.02, 0.03, 0.04, 0.25, 0.5 by hand: 0.06, 0.10, 0.12, 0.12, 0.50, 0.50
    assert listnet["test_p_holm_test_reads"] == pytest.approx(0.5)
    assert ranknet["test_p_holm_test_reads"] == pytest.approx(0.12)
    assert ranknet["test_p_holm_vs_best_group"] == pytest.approx(0.5)
    board = {r["experiment"]: r for r in json.loads((repo / "report" / "leaderboard.json").read_text())}
    assert (board["s2"]["test_p_vs_first_stage"], board["s2"]["test_p_holm_test_reads"]) == (0.02, pytest.approx(0.1))
    assert (board["rank"]["test_p_vs_first_stage"], board["rank"]["test_p_holm_test_reads"]) == (0.04, pytest.approx(0.12))

    md = (repo / "report" / "report.md").read_text(encoding="utf-8")
    assert "**5 distinct systems** have been evaluated on test across the 5 ranked experiment rows (10 evaluations" in md
    assert "family of all **6 test comparisons**" in md
    assert "| toy | main, s2, s3 | 3 | 1, 2, 3 | 0.5200 ± 0.0200 | 0.4250 ± 0.0250 |" in md
    assert "| toy | rank | 1 | 1 | 0.4500 |" in md
