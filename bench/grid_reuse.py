"""What a grid cell reuses from the cells before it, measured on the real pipeline.

Run in a checkout after ``make repro`` (the workspace's pipeline computed once):

    .venv/bin/python bench/grid_reuse.py

It runs three experiments the way a queued grid cell runs -- ``dvc exp run --temp``, DVC's
temporary-workspace executor, the one ``dvc queue start`` workers use (nothing of the workspace's
untracked state is visible) -- each differing from the one before in one factor:

1. ``train.seed`` changed: a new reranker is trained and scored (the cell that pays);
2. the same, plus ``tune.epsilon``: only tune and the stages after it may run;
3. the same as 1, plus ``score.top_k`` 20 -> 30: the model is restored and only the pairs ranked
   21-30 are new to the score cache.

For every cell it prints each stage as ``executed`` / ``restored`` (from DVC's run-cache) /
``unchanged`` with its seconds, the score stage's cache counters, and the wall-time ratio of each
cell to the first. It exits 1 when a stage upstream of the changed factor executed, or when cell 3
computed any pair but the new ones. The experiments are removed afterwards (``--keep`` keeps them).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import yaml

from rerank_lab.exp_run import dvc_command, run_experiment

REPO = Path(__file__).resolve().parents[1]
CACHE_LINE = re.compile(r"score cache: pairs_computed (\d+), pairs_from_cache (\d+)")


def run_cell(name: str, sets: list[str]) -> tuple[float, list[tuple[str, str, float]], tuple[int, int] | None]:
    """Run one experiment; returns its wall time, ``(stage, state, seconds)`` rows and the score counters."""
    print(f"$ exp run --temp -n {name} {' '.join('-S ' + s for s in sets)}", flush=True)
    run = run_experiment(name, sets, cwd=REPO)
    if run.returncode != 0:
        sys.exit(f"{run.tail()}\nexperiment {name} failed (its last output above)")
    counters = None
    for line in run.output:
        if m := CACHE_LINE.search(line):
            counters = (int(m.group(1)), int(m.group(2)))
    return run.seconds, run.stages, counters


def new_pairs(params: dict, top_k_from: int, top_k_to: int) -> int:
    """Pairs ranked ``top_k_from+1 .. top_k_to`` in the score stage's first-stage runs (the workspace's)."""
    from rerank_lab.io.trec import read_run

    total = 0
    for ds in params["datasets"]:
        for run in params["score"]["runs"]:
            for split in params["score"]["splits"]:
                path = REPO / "data" / "retrieve" / ds / run / f"{split}.trec"
                if path.is_file():
                    total += sum(min(len(d), top_k_to) - min(len(d), top_k_from) for d in read_run(path).values())
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep the three experiments")
    args = ap.parse_args()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    seed, top_k, eps = params["train"]["seed"], params["score"]["top_k"], params["tune"]["epsilon"]
    other_eps = 1.0 if eps != 1.0 else 0.5
    cells = [
        ("reuse-seed", [f"train.seed={seed + 1}"], "train"),
        ("reuse-seed-eps", [f"train.seed={seed + 1}", f"tune.epsilon={other_eps}"], "tune"),
        ("reuse-seed-topk", [f"train.seed={seed + 1}", f"score.top_k={top_k + 10}"], "score"),
    ]
    results = []
    ok = True
    try:
        for name, sets, changed in cells:
            wall, stages, counters = run_cell(name, sets)
            results.append(wall)
            print(f"\n{name} ({' '.join(sets)}): {wall:.1f} s, ratio to the first cell {wall / results[0]:.3f}")
            downstream = False  # set from the first stage of the changed factor on (DVC prints stages in pipeline order)
            for stage, state, sec in stages:
                downstream = downstream or (changed is not None and stage.split("@")[0] == changed)
                flag = ""
                if stage == "check":  # reads the whole params file: reruns on any change, its constant output restores the rest
                    flag = "   (the params check: reads every key)"
                elif not downstream and state == "executed":
                    flag, ok = "   <-- upstream of the changed factor, yet executed", False
                print(f"  {stage:38s} {state:9s} {sec:7.1f} s{flag}")
            if counters:
                print(f"  score cache: {counters[0]} pairs computed, {counters[1]} from the cache")
            if changed == "score":
                expected = new_pairs(params, top_k, top_k + 10)
                good = counters is not None and counters[0] == expected
                ok = ok and good
                print(
                    f"  new pairs (ranked {top_k + 1}-{top_k + 10}): {expected}; computed {counters[0] if counters else '-'}"
                    f" -> {'only the new pairs' if good else 'MORE THAN THE NEW PAIRS'}"
                )
            print(flush=True)
    finally:
        if not args.keep:
            subprocess.run([dvc_command(), "exp", "remove", *[c[0] for c in cells]], cwd=REPO, capture_output=True)
    print("OK: every stage upstream of the changed factor was restored" if ok else "FAIL: see the flagged lines")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
