"""evaluate: the false-evidence rate of no-evidence queries and the ECE of tune's probabilities, by hand."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from rerank_lab.errors import InputError
from rerank_lab.evaluate import calibration_summary, evaluate_runs, write_evaluation
from rerank_lab.io.qrels import write_qrels
from rerank_lab.io.trec import write_run

METRICS = ("ndcg@10", "mrr@10")

# h1, h2 have evidence; n1, n2, n3 are no-evidence queries (n3 is judged, but grade 0 only).
QRELS = {
    "h1": {"d1": 1, "d2": 0},
    "h2": {"d3": 2},
    "n3": {"d9": 0},
}
SPLIT_IDS = {"h1", "h2", "n1", "n2", "n3"}
HAS_EVIDENCE = {
    # h1: d1 (grade 1) at rank 1 -> nDCG 1, RR 1
    "h1": {"d1": 2.0, "d2": 1.0},
    # h2: d3 (grade 2) at rank 2 -> nDCG (2 / log2 3) / 2, RR 1/2
    "h2": {"d4": 3.0, "d3": 0.5},
}
ANSWERS = HAS_EVIDENCE | {"n1": {"d5": -3.0}}  # answers n1 only (a negative score is still an answer)
QUIET = dict(HAS_EVIDENCE)  # answers no no-evidence query
ALL = HAS_EVIDENCE | {"n1": {"d5": 0.1}, "n2": {"d6": 0.2, "d7": 0.1}, "n3": {"d9": 5.0}}


def _evaluate(tmp_path: Path, runs: dict[str, dict], split_ids: set[str] = SPLIT_IDS) -> dict:
    for name, run in runs.items():
        write_run(run, tmp_path / "runs" / name / "test.trec", tag=name)
    write_qrels(QRELS, tmp_path / "qrels" / "test.tsv")
    summary, _ = evaluate_runs([tmp_path / "runs"], tmp_path / "qrels", {"test": split_ids}, METRICS, ("test",))
    return summary


def test_false_evidence_rate_by_hand(tmp_path: Path):
    summary = _evaluate(tmp_path, {"answers": ANSWERS, "quiet": QUIET, "all": ALL})
    answers, quiet, every = summary["answers"]["test"], summary["quiet"]["test"], summary["all"]["test"]
    # three no-evidence queries (n1, n2 without qrels, n3 with grade 0 only); "answers" returns results for n1 only
    assert answers["queries_without_relevant"] == 3
    assert answers["false_evidence_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert quiet["false_evidence_rate"] == 0.0
    assert every["false_evidence_rate"] == 1.0
    # the has-evidence means are computed on h1, h2 only, whatever the run returns for no-evidence queries
    expected = {"ndcg@10": (1 + (2 / math.log2(3)) / 2) / 2, "mrr@10": (1 + 1 / 2) / 2}
    for run in (answers, quiet, every):
        assert run["queries"] == 2
        for m, v in expected.items():
            assert run[m] == pytest.approx(v, abs=1e-6), m


def test_no_false_evidence_key_without_no_evidence_queries(tmp_path: Path):
    summary = _evaluate(tmp_path, {"answers": HAS_EVIDENCE}, split_ids={"h1", "h2"})
    assert summary["answers"]["test"]["queries_without_relevant"] == 0
    assert "false_evidence_rate" not in summary["answers"]["test"]


def test_false_evidence_rate_reaches_the_metrics_file(tmp_path: Path):
    summary = _evaluate(tmp_path, {"answers": ANSWERS})
    write_evaluation(summary, [], METRICS, tmp_path / "metrics.json", tmp_path / "eval")
    written = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert written["answers"]["test"]["false_evidence_rate"] == round(1 / 3, 6)


# --- calibration_summary --------------------------------------------------------------------------

PROB_HEADER = "run\tquery_id\tdoc_id\tscore\tp_sigmoid\tp"
# Labels from QRELS: 1 for a doc with grade > 0, else 0 (grade 0, unjudged, no-evidence query).
PROB_LINES = [
    "tuned\th1\td1\t2.0\t0.9\t0.8",  # grade 1 -> label 1
    "tuned\th1\td2\t0.1\t0.6\t0.3",  # grade 0 -> 0
    "tuned\th2\td4\t-1.0\t0.3\t0.2",  # unjudged -> 0
    "tuned\th2\td3\t0.5\t0.4\t0.7",  # grade 2 -> 1
    "tuned\tn1\td5\t1.0\t0.7\t0.6",  # no-evidence query -> 0
    "other\th2\td3\t0.5\t0.4\t1.0",  # another run in the same file: label 1, p 1.0
]
# n_bins=2: bins [0, 0.5] and (0.5, 1].
# calibrated p: bin 1 holds 0.3 (0), 0.2 (0): confidence 0.25, accuracy 0 -> gap 0.25, weight 2/5
#               bin 2 holds 0.8 (1), 0.7 (1), 0.6 (0): confidence 0.7, accuracy 2/3 -> gap 1/30, weight 3/5
#               ECE = 2/5 * 0.25 + 3/5 * 1/30 = 0.1 + 0.02 = 0.12
# sigmoid:      bin 1 holds 0.3 (0), 0.4 (1): confidence 0.35, accuracy 0.5 -> gap 0.15, weight 2/5
#               bin 2 holds 0.9 (1), 0.6 (0), 0.7 (0): confidence 2.2/3, accuracy 1/3 -> gap 0.4, weight 3/5
#               ECE = 0.06 + 0.24 = 0.30
# "other": one pair, p 1.0 with label 1 -> ECE 0; p_sigmoid 0.4 with label 1 -> ECE 0.6


def _calibration(tmp_path: Path, lines: list[str], summary: dict | None = None, n_bins: int = 2):
    probs = tmp_path / "tune" / "probabilities"
    probs.mkdir(parents=True, exist_ok=True)
    (probs / "test.tsv").write_text("\n".join([PROB_HEADER, *lines]) + "\n", encoding="utf-8")
    write_qrels(QRELS, tmp_path / "qrels" / "test.tsv")
    summary = {} if summary is None else summary
    bins = calibration_summary(summary, [probs], tmp_path / "qrels", ("validation", "test"), n_bins=n_bins)
    return summary, bins, probs / "test.tsv"


def test_ece_by_hand(tmp_path: Path):
    summary, bins, _ = _calibration(tmp_path, PROB_LINES)
    assert summary["tuned"]["test"]["ece"] == pytest.approx(0.12, abs=1e-6)
    assert summary["tuned"]["test"]["ece_sigmoid"] == pytest.approx(0.30, abs=1e-6)
    assert summary["tuned"]["test"]["calibration_pairs"] == 5
    assert summary["other"]["test"] == {"ece": 0.0, "ece_sigmoid": pytest.approx(0.6, abs=1e-6), "calibration_pairs": 1}
    assert "validation" not in summary["tuned"]  # no probabilities/validation.tsv: nothing added


def test_reliability_bins_by_hand(tmp_path: Path):
    _, bins, _ = _calibration(tmp_path, PROB_LINES)
    assert [(r, s, k) for r, s, k, _ in bins] == [
        ("tuned", "test", "calibrated"),
        ("tuned", "test", "calibrated"),
        ("tuned", "test", "sigmoid"),
        ("tuned", "test", "sigmoid"),
        ("other", "test", "calibrated"),
        ("other", "test", "calibrated"),
        ("other", "test", "sigmoid"),
        ("other", "test", "sigmoid"),
    ]
    cal = [b for r, _, k, b in bins if r == "tuned" and k == "calibrated"]
    assert [(b["low"], b["high"], b["count"]) for b in cal] == [(0.0, 0.5, 2), (0.5, 1.0, 3)]
    assert cal[0]["mean_confidence"] == pytest.approx(0.25) and cal[0]["accuracy"] == 0.0
    assert cal[1]["mean_confidence"] == pytest.approx(0.7) and cal[1]["accuracy"] == pytest.approx(2 / 3)
    other = [b for r, _, k, b in bins if r == "other" and k == "calibrated"]
    assert other[0] == {"low": 0.0, "high": 0.5, "count": 0, "mean_confidence": None, "accuracy": None}  # empty bin listed


def test_calibration_adds_to_the_evaluation_summary(tmp_path: Path):
    summary = _evaluate(tmp_path, {"tuned": ANSWERS})
    before = dict(summary["tuned"]["test"])
    summary, bins, _ = _calibration(tmp_path, PROB_LINES, summary=summary)
    assert summary["tuned"]["test"] == {
        **before,
        "ece": pytest.approx(0.12, abs=1e-6),
        "ece_sigmoid": pytest.approx(0.3, abs=1e-6),
        "calibration_pairs": 5,
    }
    # and the bins reach reliability.tsv, the file the report plots
    write_evaluation(summary, [], METRICS, tmp_path / "metrics.json", tmp_path / "eval", bins)
    lines = (tmp_path / "eval" / "reliability.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "run\tsplit\tprobability\tlow\thigh\tcount\tmean_confidence\taccuracy"
    assert len(lines) == 1 + len(bins)
    assert "other\ttest\tcalibrated\t0.0\t0.5\t0\t\t" in lines


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("tuned\th1\td9\t0.5\t0.4", "expected 6 columns, got 5"),
        ("tuned h1 d9 0.5 0.4 0.3", "expected 6 columns, got 1"),  # spaces, not tabs
        ("tuned\th1\td9\t0.5\tabc\t0.3", "probabilities 'abc', '0.3' are not numbers in [0, 1]"),
        ("tuned\th1\td9\t0.5\t0.4\t1.5", "probabilities '0.4', '1.5' are not numbers in [0, 1]"),
        ("tuned\th1\td9\t0.5\tnan\t0.3", "probabilities 'nan', '0.3' are not numbers in [0, 1]"),
    ],
)
def test_malformed_probabilities_line(tmp_path: Path, bad: str, problem: str):
    lines = [*PROB_LINES[:2], bad, *PROB_LINES[2:]]  # header is line 1, so the bad line is line 4
    probs = tmp_path / "tune" / "probabilities" / "test.tsv"
    with pytest.raises(InputError, match="^" + re.escape(f"{probs}: line 4: {problem} (fix: write it with the tune stage)")):
        _calibration(tmp_path, lines)
