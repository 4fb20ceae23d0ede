"""Show that a refactor of tune leaves its outputs byte-identical: run ``tune_stage`` on a seeded
synthetic world with the default pipeline's tune params (params.yaml: 300 trials, epsilon 0.5, every
calibration, fusion and gate) and digest every file it writes.

The world is the shape the default pipeline gives tune (SciFact-rationales-like): several hundred
dev queries, a third of them no-evidence (unjudged, or judged with grade 0 only), graded relevant
docs inside and outside the reranked head, a few tied first-stage scores, short and empty
first-stage lists, and a test split without qrels. Run it once per source tree and compare:

    PYTHONPATH=/tmp/old/src python bench/tune_identity.py run /tmp/cmp/old
    PYTHONPATH=src          python bench/tune_identity.py run /tmp/cmp/new --inputs /tmp/cmp/old/inputs
    python bench/tune_identity.py compare /tmp/cmp/old /tmp/cmp/new

``compare`` checks every output file byte for byte and the metrics dict key for key, except
``study``: the default study name digests the source of tune's import closure (so that a shared
study is never continued by other code), and a refactor changes that source by definition.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

EXCLUDED = ("study",)  # the one metric that names the code, not its result


def write_world(root: Path, n_dev: int, n_test: int, depth: int, reranked: int, seed: int) -> None:
    """The stage's inputs under ``root``: dataset/, qrels/validation.tsv, runs/bm25/, scored/scores.tsv."""
    import datasets

    from rerank_lab.io.datasets import save_dataset
    from rerank_lab.io.qrels import write_qrels
    from rerank_lab.io.scores import write_scores
    from rerank_lab.io.trec import ranked, write_run
    from rerank_lab.schema import to_dataset

    rng = np.random.default_rng(seed)
    runs: dict[str, dict[str, dict[str, float]]] = {}
    heads: dict[str, dict[str, dict[str, float]]] = {}
    qrels: dict[str, dict[str, int]] = {}
    for split, n in (("validation", n_dev), ("test", n_test)):
        runs[split], heads[split] = {}, {}
        for i in range(n):
            qid = f"{split[0]}{i:04d}"
            size = depth if i % 17 else int(rng.integers(0, reranked + 3))  # some short lists, a few empty
            fs = np.round(np.sort(rng.normal(12.0, 2.5, size))[::-1], 2)  # rounded: real ties, ordered by doc id
            docs = [f"{qid}-d{j:03d}" for j in rng.permutation(size)]  # doc ids not in score order
            run = dict(zip(docs, fs.tolist()))
            ce = rng.normal(-3.0, 2.0, size)
            relevant: dict[str, int] = {}
            if i % 3:  # has evidence: 1-3 relevant docs, graded, mostly near the top of the first stage
                for _ in range(int(rng.integers(1, 4))):
                    if size == 0:
                        break
                    pos = min(int(rng.exponential(reranked / 2)), size - 1)
                    relevant[docs[pos]] = int(rng.integers(1, 3))
                    ce[pos] += rng.normal(4.5, 1.5)
            elif i % 6 == 0 and size:
                relevant = {docs[0]: 0}  # judged, nothing relevant: still no-evidence
            order = [d for d, _ in ranked(run)]
            runs[split][qid] = run
            heads[split][qid] = {d: float(ce[docs.index(d)]) for d in order[:reranked]}
            if split == "validation" and relevant:
                qrels[qid] = relevant

    def row(qid: str) -> dict:
        return {"id": qid, "query": f"query {qid}", "texts": ["Some text."], "text_ids": ["x"], "context_spans": [[[0, 10]]], "labels": [1]}

    save_dataset(datasets.DatasetDict({s: to_dataset([row(q) for q in sorted(r)]) for s, r in runs.items()}), root / "dataset")
    for split, run in runs.items():
        write_run({q: d for q, d in run.items() if d}, root / "runs" / "bm25" / f"{split}.trec", tag="bm25")
    write_scores({("bm25", s): {q: h for q, h in heads[s].items() if h} for s in runs}, root / "scored" / "scores.tsv")
    write_qrels(qrels, root / "qrels" / "validation.tsv")


def run(out: Path, inputs: Path | None, params: Path, epsilon: float | None) -> None:
    import yaml

    from rerank_lab.tune import TuneConfig, tune_stage

    if inputs is None:
        inputs = out / "inputs"
        write_world(inputs, n_dev=450, n_test=150, depth=100, reranked=20, seed=2026)
    section = yaml.safe_load(params.read_text())["tune"]  # the default pipeline's tune params (300 trials, epsilon 0.5, ...)
    cfg = TuneConfig(**(section | ({} if epsilon is None else {"epsilon": epsilon})))
    start = time.perf_counter()
    summary = tune_stage(cfg, "ce", inputs / "dataset", inputs / "qrels", inputs / "runs", inputs / "scored", cfg.storage, out / "out")
    (out / "metrics.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    took = time.perf_counter() - start
    print(f"{cfg.n_trials} trials, epsilon {cfg.epsilon}, in {took:.1f} s; study {summary['study']}; best {summary['best']}")
    for name, digest in digests(out).items():
        print(f"{digest}  {name}")


def digests(result: Path) -> dict[str, str]:
    """sha256 of every output file, and of the metrics without the excluded keys."""
    out = {p.relative_to(result).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((result / "out").rglob("*"))
           if p.is_file()}  # fmt: skip
    metrics = {k: v for k, v in json.loads((result / "metrics.json").read_text()).items() if k not in EXCLUDED}
    out["metrics.json (without study)"] = hashlib.sha256(json.dumps(metrics, sort_keys=True).encode()).hexdigest()
    return out


def compare(a: Path, b: Path) -> int:
    da, db = digests(a), digests(b)
    bad = sorted(k for k in da.keys() | db.keys() if da.get(k) != db.get(k))
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    differing = sorted(k for k in ma.keys() | mb.keys() if ma.get(k) != mb.get(k))
    print(f"{len(da)} files compared (incl. metrics); differing: {bad or 'none'}")
    print(f"metrics keys differing: {differing} (allowed: {list(EXCLUDED)})")
    return 0 if not bad and set(differing) <= set(EXCLUDED) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    r.add_argument("--inputs", type=Path, help="reuse another run's inputs/ (default: write the world)")
    r.add_argument("--params", type=Path, default=Path(__file__).resolve().parents[1] / "params.yaml", help="its tune section is used")
    r.add_argument("--epsilon", type=float, help="override tune.epsilon")
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = parser.parse_args()
    if args.cmd == "run":
        run(args.out, args.inputs, args.params, args.epsilon)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
