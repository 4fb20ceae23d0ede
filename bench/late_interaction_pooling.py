"""Late interaction with document token pooling, zero-shot: nDCG@10 of the pipeline's BM25 test run
(top ``--top-k``) reranked by MaxSim over a sentence-transformers model's token embeddings, for
each pool factor and method, with the vectors per document an index would hold. The documents are
embedded once; each setting pools and scores them (the late-interaction family's own code).

    .venv/bin/python bench/late_interaction_pooling.py [--dataset scifact_rationales] [--model all-MiniLM-L6-v2]
        [--factors 1 2 4 6] [--top-k 20] 2>/dev/null
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from rerank_lab.evaluate import mean, per_query
from rerank_lab.io.datasets import load_corpus, split_queries
from rerank_lab.io.qrels import read_qrels
from rerank_lab.io.trec import ranked, read_run
from rerank_lab.late_interaction import maxsim_pair, pool
from rerank_lab.rerankers import make_reranker
from rerank_lab.rerankers.late_interaction import unit
from rerank_lab.schema import passage_text
from rerank_lab.score import reranked_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="scifact_rationales")
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--factors", type=int, nargs="+", default=[1, 2, 4, 6])
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--query-length", type=int, default=32)
    ap.add_argument("--document-length", type=int, default=300)
    args = ap.parse_args()
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)

    root = Path("data/convert") / args.dataset
    queries = split_queries(root / "dataset", ("test",))["test"]
    passages = {d["id"]: passage_text(d["title"], d["text"]) for d in load_corpus(root / "corpus")}
    qrels = read_qrels(root / "qrels" / "test.tsv")
    first = read_run(Path("data/retrieve") / args.dataset / "bm25" / "test.trec")
    heads = {q: [d for d, _ in ranked(first[q])[: args.top_k]] for q in sorted(first)}
    docs = sorted({d for h in heads.values() for d in h})
    entry = {"type": "late-interaction", "model": args.model, "query_length": args.query_length, "document_length": args.document_length}
    scorer = make_reranker("li", entry).scorer(args.model, None)
    start = time.perf_counter()
    q_vec = dict(zip(sorted(heads), map(unit, scorer._embed([queries[q] for q in sorted(heads)], "query"))))
    d_tok = dict(zip(docs, map(unit, scorer._embed([passages[d] for d in docs], "document"))))
    took = time.perf_counter() - start
    print(f"{args.dataset} test: {len(heads)} queries, BM25 top {args.top_k}, {len(docs)} documents embedded in {took:.0f} s")
    print(f"model {args.model}, query / document length {args.query_length} / {args.document_length}")
    ndcg = ("ndcg@10",)
    print(f"BM25: nDCG@10 {mean(per_query(first, qrels, ndcg), ndcg)['ndcg@10']:.4f}")
    print(f"{'method':<13} {'factor':>6} {'vectors/doc':>12} {'nDCG@10':>8} {'pool s':>7}")
    for method in ("hierarchical", "kmeans"):
        for factor in args.factors:
            if factor == 1 and method == "kmeans":
                continue  # factor 1 pools nothing: the same run as hierarchical's
            start = time.perf_counter()
            pooled = {d: pool(v, factor, method, seed=0, protected=1) for d, v in d_tok.items()}
            seconds = time.perf_counter() - start
            head = {q: {d: maxsim_pair(q_vec[q], pooled[d]) for d in h} for q, h in heads.items()}
            value = mean(per_query(reranked_run(first, head), qrels, ndcg), ndcg)["ndcg@10"]
            vectors = np.mean([len(pooled[d]) for d in docs])
            print(f"{method:<13} {factor:>6} {vectors:>12.1f} {value:>8.4f} {seconds:>7.1f}")


if __name__ == "__main__":
    main()
