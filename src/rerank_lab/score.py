"""score: rerank the top ``top_k`` candidates of first-stage runs with a cross-encoder.

Writes ``<output>/<run>+<model name>/<split>.trec``: the whole first-stage list, its top
``top_k`` reordered by the reranker and the rest kept below in first-stage order -- so Recall@100
of a reranked run means what it means for the first stage, not Recall@``top_k``. The run's
scores encode that order (:func:`rerank_lab.io.trec.ranked_scores`); the reranker's raw scores
go to ``scores.tsv`` (:mod:`rerank_lab.io.scores`), which tune reads.
Scores come from the shared engine, so pairs scored by any earlier experiment with the same
model are read from the score cache instead of being recomputed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from rerank_lab.config import ListOf, Split, params_model, parse, section
from rerank_lab.errors import InputError
from rerank_lab.io.atomic import atomic_dir
from rerank_lab.io.scores import Scores, write_scores
from rerank_lab.io.trec import Run, ranked, ranked_scores, read_run, write_run
from rerank_lab.schema import passage_text

log = logging.getLogger(__name__)


@params_model("score")
class ScoreConfig:
    """The ``score`` section."""

    runs: ListOf[str] = Field(("bm25",), min_length=1)
    top_k: int = Field(20, ge=1)  # e.g. 20 on CPU, 100 on a GPU
    name: str = Field("ce", min_length=1)
    max_length: int = Field(256, ge=1)
    batch_tokens: int = Field(8192, ge=1)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    splits: ListOf[Split] = Field(("validation", "test"), min_length=1)


# the shared cache's bookkeeping: depends on what earlier experiments scored, not on this stage's
# inputs -- logged, kept out of the DVC metrics file
VOLATILE = ("pairs_computed", "pairs_from_cache", "forward_batches")


def rerank(run: Run, queries: dict[str, str], passages: dict[str, str], scorer, top_k: int, path: str = "run") -> Run:
    """Score each query's top ``top_k`` docs; returns their raw reranker scores (the head only)."""
    stray = sorted(set(run) - set(queries))
    if stray:
        raise InputError(
            f"run names query {stray[0]!r}, which the dataset lacks",
            path=path,
            record=f"query {stray[0]}",
            fix="score runs retrieved for this dataset",
        )
    pairs, keys = [], []
    for qid in sorted(run):
        for did, _ in ranked(run[qid])[:top_k]:
            if did not in passages:
                raise InputError(
                    f"run names doc {did!r}, which the corpus lacks",
                    path=path,
                    record=f"query {qid}",
                    fix="score runs retrieved from this corpus",
                )
            pairs.append((queries[qid], passages[did]))
            keys.append((qid, did))
    scores = scorer.score(pairs)
    out: Run = {}
    for (qid, did), s in zip(keys, scores.tolist()):
        out.setdefault(qid, {})[did] = s
    return out


def reranked_run(first_stage: Run, head: Run) -> Run:
    """Each query's head in reranker order, then the rest of its first-stage list in first-stage
    order, as tie-free order scores. Ties in either order go by :func:`ranked` (trec_eval's).

    >>> reranked_run({"q": {"a": 3.0, "b": 2.0, "c": 1.0}}, {"q": {"a": -1.0, "b": 4.0}})
    {'q': {'b': 3.0, 'a': 2.0, 'c': 1.0}}
    """
    out: Run = {}
    for qid, docs in first_stage.items():
        top = head.get(qid, {})
        order = [d for d, _ in ranked(top)] + [d for d, _ in ranked(docs) if d not in top]
        out[qid] = ranked_scores(order)
    return out


def score_runs(cfg: ScoreConfig, scorer, runs_root: Path, queries: dict[str, dict[str, str]], corpus, out: Path) -> dict[str, float]:
    """Rerank every configured run and split; returns counts for the metrics file."""
    passages = {d["id"]: passage_text(d["title"], d["text"]) for d in corpus}
    stats: dict[str, float] = {}
    table: Scores = {}
    with atomic_dir(out) as tmp:
        for name in cfg.runs:
            for split in cfg.splits:
                path = runs_root / name / f"{split}.trec"
                if split not in queries:
                    continue
                if not path.is_file():
                    raise InputError(f"no {split} run for {name!r}", path=path, fix="retrieve that split or drop it from score.splits")
                first_stage = read_run(path)
                head = rerank(first_stage, queries[split], passages, scorer, cfg.top_k, str(path))
                write_run(reranked_run(first_stage, head), tmp / f"{name}+{cfg.name}" / f"{split}.trec", tag=f"{name}+{cfg.name}")
                table[(name, split)] = head
                stats[f"{name}_{split}_pairs"] = sum(len(v) for v in head.values())
        write_scores(table, tmp / "scores.tsv")
    stats.update({"pairs_computed": scorer.pairs_scored, "pairs_from_cache": scorer.cache.hits, "forward_batches": scorer.forward_calls})
    return stats


# --- the stage contract (rerank_lab.stage) ------------------------------------------------------


def configure(params: dict[str, Any]) -> ScoreConfig:
    """The ``score`` section."""
    return parse(ScoreConfig, section(params, "score"), "score")


def run(cfg: ScoreConfig, inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, float]:
    """``--runs`` reranked by ``--model`` into ``--output`` (pairs cached in ``--cache``); the
    metrics include :data:`VOLATILE` keys (printed, not written)."""
    from rerank_lab.io.datasets import load_corpus, split_queries
    from rerank_lab.score_cache import ScoreCache
    from rerank_lab.scoring import PairScorer

    scorer = PairScorer(str(inputs["model"]), cfg.max_length, cfg.batch_tokens, cfg.dtype, cache=ScoreCache(outputs.get("cache")))
    queries = split_queries(inputs["dataset"], cfg.splits)
    return score_runs(cfg, scorer, inputs["runs"], queries, load_corpus(inputs["corpus"]), outputs["output"])


def describe(cfg: ScoreConfig, stats: dict[str, float]) -> str:
    """The shared cache's bookkeeping (kept out of the metrics file)."""
    return "score cache: " + ", ".join(f"{k} {stats[k]}" for k in VOLATILE)
