"""A toy DVC project for the report and remote tests: git identity, a checked command runner, the
commit of a one-stage pipeline (git init, dvc init, dvc repro, commit), and a stage that writes what
the report reads."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

GIT_ENV = {
    "GIT_AUTHOR_NAME": "rerank-lab tests",
    "GIT_AUTHOR_EMAIL": "tests@example.invalid",
    "GIT_COMMITTER_NAME": "rerank-lab tests",
    "GIT_COMMITTER_EMAIL": "tests@example.invalid",
}
DVC = [sys.executable, "-m", "dvc"]


def run(args: list, cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command in ``cwd`` with the test git identity (and ``env`` on top); by default it must succeed."""
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **GIT_ENV, **(env or {})})
    assert not check or proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc


def commit_toy_pipeline(repo: Path, stage: dict, message: str) -> None:
    """Write ``dvc.yaml`` with the one stage ``toy``, reproduce it and commit everything on ``main``."""
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"toy": stage}}), encoding="utf-8")
    run(["git", "init", "-q", "-b", "main"], repo)
    run([*DVC, "init", "-q"], repo)
    run([*DVC, "repro", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", message], repo)


# --- a stage that writes what the report reads --------------------------------------------------

TOPK_TSV = (
    "top_k_rerank\tselect_ndcg@10\tselect_false_evidence\tconfirm_ndcg@10\tconfirm_false_evidence\n"
    "1\t0.40\t0.5\t0.38\t0.6\n"
    "2\t0.55\t0.4\t0.50\t0.4\n"
    "3\t0.61\t0.3\t0.57\t0.25\n"
)
TRIALS_TSV = (
    "number\tstate\tvalue\tfalse_evidence\tfeasible\tparams\n"
    '0\tcomplete\t0.50\t0.1\tTrue\t{"top_k_rerank": 3}\n'
    '1\tcomplete\t0.70\t0.9\tFalse\t{"top_k_rerank": 1}\n'
    '2\tpruned\t0.30\tNone\tFalse\t{"top_k_rerank": 2}\n'
    "3\tpruned\tNone\tNone\tFalse\t{}\n"
    '4\tcomplete\t0.60\t0.05\tTrue\t{"top_k_rerank": 2}\n'
)
RELIABILITY_TSV = (
    "run\tsplit\tprobability\tlow\thigh\tcount\tmean_confidence\taccuracy\n"
    "bm25+ce+tuned\ttest\tcalibrated\t0.0\t0.5\t3\t0.2\t0.33\n"
    "bm25+ce+tuned\ttest\tcalibrated\t0.5\t1.0\t2\t0.8\t0.5\n"
    "bm25+ce+tuned\ttest\tsigmoid\t0.0\t0.5\t0\t\t\n"  # an empty bin: skipped
    "bm25+ce+tuned\ttest\tsigmoid\t0.5\t1.0\t5\t0.9\t0.4\n"
    "bm25+ce+tuned\tvalidation\tcalibrated\t0.0\t0.5\t4\t0.3\t0.25\n"
)

# Metrics in the shapes evaluate and tune write, and the three TSVs the plots read. Dev nDCG@10
# depends on train.loss, so every experiment lands in its own leaderboard row; the board is sorted by
# the confirm-half score, whose order differs from full dev's. Each run appends its loss to
# $TOY_RUNLOG when that is set, so a test can count the runs that really executed.
REPORT_STAGE_CODE = """
import json, os, yaml
p = yaml.safe_load(open("params.yaml"))
loss = p["train"]["loss"]
if os.environ.get("TOY_RUNLOG"):
    open(os.environ["TOY_RUNLOG"], "a").write(loss + "\\n")
dev = {"bce": 0.50, "listnet": 0.60, "ranknet": 0.55}[loss]
ev = {
    "bm25": {"validation": {"ndcg@10": 0.45}, "test": {"ndcg@10": 0.40}},
    "bm25+ce+tuned": {
        "validation": {"ndcg@10": dev},
        "test": {"ndcg@10": dev - 0.05, "false_evidence_rate": 0.1, "ece": 0.05, "recall@100": 0.9,
                 "vs_bm25": {"delta": dev - 0.45, "ci_low": 0.01, "ci_high": 0.2, "p_randomization": 0.01}},
    },
}
for d in ("metrics/evaluate", "metrics/tune", "data/tune/toy", "data/evaluate/toy"):
    os.makedirs(d, exist_ok=True)
json.dump(ev, open("metrics/evaluate/toy.json", "w"))
confirm = {"bce": 0.48, "listnet": 0.52, "ranknet": 0.57}[loss]  # the confirm half orders them unlike full dev
json.dump({"best": {"top_k_rerank": 3, "loss_seen": loss}, "best_confirm_ndcg@10": confirm, "meets_epsilon_on_confirm": True,
           "beats_untuned_on_confirm": loss != "bce", "beats_first_stage_on_confirm": True}, open("metrics/tune/toy.json", "w"))
open("data/tune/toy/topk.tsv", "w").write(TOPK)
json.dump({"loss": loss}, open("data/tune/toy/best.json", "w"))  # the one cached output that varies
open("data/tune/toy/trials.tsv", "w").write(TRIALS)
open("data/evaluate/toy/reliability.tsv", "w").write(RELIABILITY)
"""


def report_stage(repo: Path) -> dict:
    """The ``toy`` stage, its script written to ``repo/toy_stage.py``: reads ``datasets`` and ``train.loss``;
    two cached folders, two ``cache: false`` metrics. (The code goes in a file, not in ``cmd``: DVC's YAML
    writer folds a long ``cmd`` holding backslashes so that it reads back changed.)"""
    code = REPORT_STAGE_CODE.replace("TOPK", repr(TOPK_TSV)).replace("TRIALS", repr(TRIALS_TSV))
    (repo / "toy_stage.py").write_text(code.replace("RELIABILITY", repr(RELIABILITY_TSV)), encoding="utf-8")
    return {
        "cmd": f"{shlex.quote(sys.executable)} toy_stage.py",
        "deps": ["toy_stage.py"],
        "params": ["datasets", "train.loss"],
        "outs": ["data/tune/toy", "data/evaluate/toy"],
        "metrics": [{"metrics/evaluate/toy.json": {"cache": False}}, {"metrics/tune/toy.json": {"cache": False}}],
    }
