"""Scoring throughput: the same model on the same SciFact pairs, in one run.

Rows: sentence-transformers' ``CrossEncoder.predict`` with its defaults (the baseline), the engine
in fp32, and the engine's explicit fast option (``cast``: the weights in bf16); on a GPU also
``predict`` in bf16 with a large batch and the engine's bf16 autocast. Each row prints pairs/s, the
ratio to ``predict`` and the largest score difference to ``predict``'s fp32 scores. ``--ndcg``
also reranks the pipeline's BM25 test run (top ``--top-k``) with fp32 and with the fast option and
prints both nDCG@10: the ranking change the fast option costs.

    .venv/bin/python bench/score_throughput.py [--model models/scifact_rationales/reranker] [--pairs 300]
        [--max-length 256] [--ndcg] 2>/dev/null   # stderr: the engine's progress bars
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from importlib import metadata
from pathlib import Path

import numpy as np
from score_cache import scifact_pairs

from rerank_lab.models import resolve_model
from rerank_lab.score_cache import ScoreCache
from rerank_lab.scoring import PairScorer, ScoringSpec, head_scores

DATASET = "scifact_rationales"


def _quiet() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _predict(model: str, pairs, max_length: int, device: str, bf16: bool = False, batch_size: int = 32):
    import torch
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(resolve_model(model), max_length=max_length, device=device)
    if bf16:
        ce.to(torch.bfloat16)
    ce.predict(pairs[:8], activation_fn=torch.nn.Identity())  # warm-up: lazy init, kernels
    out, seconds = _timed(lambda: ce.predict(pairs, activation_fn=torch.nn.Identity(), batch_size=batch_size))
    return head_scores(np.asarray(out, dtype=np.float64).reshape(len(pairs), -1)), seconds


def _engine(model: str, pairs, max_length: int, device: str, dtype: str, cast: bool, batch_tokens: int):
    scorer = PairScorer(model, max_length, batch_tokens, dtype, device, ScoreCache(None), ScoringSpec(cast=cast))
    scorer.score(pairs[:8])  # warm-up (and the model load), then a fresh cache: every pair computed
    scorer.cache = ScoreCache(None)
    return _timed(lambda: scorer.score(pairs))


def _ndcg(model: str, max_length: int, top_k: int, batch_tokens: int) -> list[tuple[str, float]]:
    """nDCG@10 of the pipeline's BM25 test run reranked (top ``top_k``) in fp32 and with the fast option."""
    from rerank_lab.evaluate import mean, per_query
    from rerank_lab.io.datasets import load_corpus, split_queries
    from rerank_lab.io.qrels import read_qrels
    from rerank_lab.io.trec import read_run
    from rerank_lab.schema import passage_text
    from rerank_lab.score import rerank, reranked_run

    root = Path("data/convert") / DATASET
    queries = split_queries(root / "dataset", ("test",))["test"]
    passages = {d["id"]: passage_text(d["title"], d["text"]) for d in load_corpus(root / "corpus")}
    qrels = read_qrels(root / "qrels" / "test.tsv")
    first = read_run(Path("data/retrieve") / DATASET / "bm25" / "test.trec")
    out = [("bm25", mean(per_query(first, qrels, ("ndcg@10",)), ("ndcg@10",))["ndcg@10"])]
    for label, dtype, cast in (("engine fp32", "float32", False), ("engine bf16 weights (cast)", "bfloat16", True)):
        scorer = PairScorer(model, max_length, batch_tokens, dtype, "cpu", ScoreCache(None), ScoringSpec(cast=cast))
        run = reranked_run(first, rerank(first, queries, passages, scorer, top_k))
        out.append((label, mean(per_query(run, qrels, ("ndcg@10",)), ("ndcg@10",))["ndcg@10"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=f"models/{DATASET}/reranker", help="a cross-encoder (default: the pipeline's trained one)")
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-tokens", type=int, default=8192)
    ap.add_argument("--input", type=Path, default=Path("data/raw/scifact"))
    ap.add_argument("--ndcg", action="store_true", help="also the nDCG@10 change of the fast option (the pipeline's outputs needed)")
    ap.add_argument("--top-k", type=int, default=20)
    args = ap.parse_args()
    import torch

    _quiet()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pairs = scifact_pairs(args.input, args.pairs)
    tokens = PairScorer(args.model, args.max_length, device="cpu")._tokenize(pairs)
    mean_tokens = sum(len(t["input_ids"]) for t in tokens) / len(tokens)
    versions = ", ".join(f"{d} {metadata.version(d)}" for d in ("torch", "transformers", "sentence-transformers"))
    gpu = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
    print(f"{len(pairs)} SciFact pairs, {mean_tokens:.0f} tokens/pair, max_length {args.max_length}; model {args.model}")
    print(f"device {device} ({gpu}), {torch.get_num_threads()} threads; {versions}")

    ref, t_ref = _predict(args.model, pairs, args.max_length, device)
    rows = [("ST predict (defaults: batch 32, fp32)", ref, t_ref)]
    rows.append(("engine fp32", *_engine(args.model, pairs, args.max_length, device, "float32", False, args.batch_tokens)))
    rows.append(
        ("engine bf16 weights (cast: true)", *_engine(args.model, pairs, args.max_length, device, "bfloat16", True, args.batch_tokens))
    )
    if device == "cuda":
        rows.append(("ST predict bf16, batch 512", *_predict(args.model, pairs, args.max_length, device, bf16=True, batch_size=512)))
        big = args.batch_tokens * 16
        rows.append(("engine bf16 autocast", *_engine(args.model, pairs, args.max_length, device, "bfloat16", False, big)))
        rows.append(("engine bf16 weights, 16x tokens", *_engine(args.model, pairs, args.max_length, device, "bfloat16", True, big)))
    print(f"{'':<40} {'pairs/s':>9} {'x predict':>10} {'max |diff| to predict fp32':>28}")
    for name, scores, seconds in rows:
        diff = float(np.abs(np.asarray(scores) - ref).max())
        print(f"{name:<40} {len(pairs) / seconds:>9.1f} {t_ref / seconds:>10.2f} {diff:>28.2e}")
    if args.ndcg:
        print(f"nDCG@10 on {DATASET} test, BM25 top {args.top_k} reranked (max_length {args.max_length}):")
        for name, value in _ndcg(args.model, args.max_length, args.top_k, args.batch_tokens):
            print(f"  {name:<38} {value:.4f}")


if __name__ == "__main__":
    main()
