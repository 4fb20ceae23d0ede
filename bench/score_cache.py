"""Benchmark the score cache: score N SciFact (query, passage) pairs cold, then again warm.

The warm run is a second PairScorer ("another experiment") on the same sqlite cache file, so it
reads every score back instead of running the model. Uses the packaged all-MiniLM-L6-v2.

    .venv/bin/python bench/score_cache.py [--pairs 200] [--max-length 256] [--input data/raw/scifact]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from rerank_lab.config import ConvertConfig
from rerank_lab.convert import convert
from rerank_lab.schema import passage_text
from rerank_lab.score_cache import ScoreCache
from rerank_lab.scoring import PairScorer


def scifact_pairs(folder: Path, n: int) -> list[tuple[str, str]]:
    """Each train query with its judged passages, then with corpus passages taken at a fixed stride."""
    conv = convert(folder, ConvertConfig(format="beir"))
    corpus = [passage_text(d["title"], d["text"]) for d in conv.corpus]
    pairs: list[tuple[str, str]] = []
    for i, row in enumerate(conv.splits["train"]):
        pairs += [(row["query"], t) for t in row["texts"]]
        pairs += [(row["query"], corpus[(i * 7919 + j * 104729) % len(corpus)]) for j in range(2)]
        if len(pairs) >= n:
            break
    return list(dict.fromkeys(pairs))[:n]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-tokens", type=int, default=8192)
    ap.add_argument("--input", type=Path, default=Path("data/raw/scifact"))
    args = ap.parse_args()
    import transformers

    transformers.logging.set_verbosity_error()  # the "newly initialized classifier" report
    transformers.logging.disable_progress_bar()
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)  # "Converting ... to CrossEncoder"

    pairs, t_convert = timed(lambda: scifact_pairs(args.input, args.pairs))
    print(f"{len(pairs)} SciFact pairs (convert + pick: {t_convert:.2f}s), max_length {args.max_length}, batch_tokens {args.batch_tokens}")
    with tempfile.TemporaryDirectory() as tmp:
        cache_path = Path(tmp) / "scores.sqlite"

        cold, t_init_cold = timed(lambda: PairScorer("all-MiniLM-L6-v2", args.max_length, args.batch_tokens, cache=ScoreCache(cache_path)))
        _, t_load = timed(cold._load)
        cold_scores, t_cold = timed(lambda: cold.score(pairs))

        warm, t_init_warm = timed(lambda: PairScorer("all-MiniLM-L6-v2", args.max_length, args.batch_tokens, cache=ScoreCache(cache_path)))
        warm_scores, t_warm = timed(lambda: warm.score(pairs))

    assert warm_scores.tolist() == cold_scores.tolist(), "the warm cache returned different scores"
    rows = [
        ("cold", t_init_cold, t_load, t_cold, cold.forward_calls, cold.pairs_scored, cold.cache.hits),
        ("warm", t_init_warm, 0.0, t_warm, warm.forward_calls, warm.pairs_scored, warm.cache.hits),
    ]
    print(f"{'run':<5} {'init s':>7} {'load s':>7} {'score s':>8} {'batches':>8} {'computed':>9} {'cached':>7}")
    for name, init, load, score, batches, computed, hits in rows:
        print(f"{name:<5} {init:>7.2f} {load:>7.2f} {score:>8.3f} {batches:>8d} {computed:>9d} {hits:>7d}")
    end_to_end = (t_init_cold + t_load + t_cold) / (t_init_warm + t_warm)
    print(f"cold/warm score time: {t_cold / t_warm:.0f}x; end to end (init + load + score): {end_to_end:.1f}x")
    print(f"device {cold.device}, dtype {cold.dtype}; warm scores identical to cold: yes")


if __name__ == "__main__":
    main()
