"""score: rerank the top ``top_k`` candidates of first-stage runs with the reranker ``score.reranker``
names (an entry of ``rerankers``: a cross-encoder, a causal-LM yes/no reranker or a bi-encoder,
:mod:`rerank_lab.rerankers`).

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
from typing import Any

import numpy as np
from pydantic import Field

from rerank_lab.config import ListOf, Split, params_model, parse, section
from rerank_lab.errors import ConfigError, InputError
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
    name: str = Field("ce", min_length=1)  # the reranked runs are <run>+<name>
    reranker: str = Field("ce", min_length=1)  # an entry of `rerankers`
    splits: ListOf[Split] = Field(("validation", "test"), min_length=1)


# the shared cache's bookkeeping: depends on what earlier experiments scored, not on this stage's
# inputs -- logged, kept out of the DVC metrics file
VOLATILE = ("pairs_computed", "pairs_from_cache", "forward_batches", "vectors_from_cache")


def rerank(run: Run, queries: dict[str, str], passages: dict[str, str], scorer, top_k: int, path: str = "run") -> Run:
    """Score each query's top ``top_k`` docs; returns their raw reranker scores (the head only). A
    scorer with ``score_lists`` (listwise) gets each query's head as one list, in first-stage order."""
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
    if hasattr(scorer, "score_lists"):  # a listwise reranker orders each query's head as a whole
        heads: dict[str, list[int]] = {}
        for i, (qid, _) in enumerate(keys):
            heads.setdefault(qid, []).append(i)
        lists = scorer.score_lists([(pairs[rows[0]][0], [pairs[i][1] for i in rows]) for rows in heads.values()])
        scores = np.empty(len(keys))
        for rows, values in zip(heads.values(), lists):
            scores[rows] = values
    else:
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
    if hasattr(scorer, "index_stats"):  # late interaction: the vectors an index of the reranked docs would hold
        docs = sorted({d for head in table.values() for docs in head.values() for d in docs})
        stats.update({f"index_{k}": v for k, v in scorer.index_stats([passages[d] for d in docs]).items()})
    stats.update({"pairs_computed": scorer.pairs_scored, "pairs_from_cache": scorer.cache.hits, "forward_batches": scorer.forward_calls})
    if hasattr(scorer, "vectors_reused"):  # late interaction: documents' token vectors read, not embedded
        stats["vectors_from_cache"] = scorer.vectors_reused
    return stats


# --- the stage contract (rerank_lab.stage) ------------------------------------------------------


def configure(params: dict[str, Any]) -> tuple[ScoreConfig, Any]:
    """The ``score`` section and the built ``rerankers.<score.reranker>`` entry."""
    from rerank_lab.rerankers import make_reranker

    cfg = parse(ScoreConfig, section(params, "score"), "score")
    return cfg, make_reranker(cfg.reranker, section(params, f"rerankers.{cfg.reranker}"))


def run(cfg: tuple[ScoreConfig, Any], inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, float]:
    """``--runs`` reranked by the configured reranker (``model: trained``: ``--model``) into
    ``--output`` (pairs cached in ``--cache``); the metrics include :data:`VOLATILE` keys (printed,
    not written)."""
    from rerank_lab.io.datasets import load_corpus, split_queries
    from rerank_lab.models import require_declared
    from rerank_lab.rerankers import TRAINED
    from rerank_lab.score_cache import ScoreCache

    score_cfg, reranker = cfg
    model = reranker.model
    if model == TRAINED:  # the train stage's model, or for a family trained by its own stage that stage's (train-late)
        option = getattr(reranker, "trained_input", "model")
        if inputs.get(option) is None:
            flag = "--" + option.replace("_", "-")
            what = f"rerankers.{score_cfg.reranker}.model is trained, but no {flag} was given"
            raise ConfigError(what, fix=f"pass {flag} (dvc.yaml does)")
        model = str(inputs[option])
    elif getattr(reranker, "reads_model_files", True):
        require_declared(model, inputs.get("models"), f"rerankers.{score_cfg.reranker}.model")
    scorer = reranker.scorer(model, ScoreCache(outputs.get("cache")))
    queries = split_queries(inputs["dataset"], score_cfg.splits)
    return score_runs(score_cfg, scorer, inputs["runs"], queries, load_corpus(inputs["corpus"]), outputs["output"])


def describe(cfg: tuple[ScoreConfig, Any], stats: dict[str, float]) -> str:
    """The shared cache's bookkeeping (kept out of the metrics file)."""
    return "score cache: " + ", ".join(f"{k} {stats[k]}" for k in VOLATILE if k in stats)
