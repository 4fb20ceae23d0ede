"""mine: append negatives (label 0) to every row of the chosen splits with a registered miner.

Reads the (deduplicated) dataset, the corpus, the graded qrels (nothing judged relevant is ever a
negative) and the first-stage runs; writes the dataset back with ``num_negatives`` negatives per
row appended to ``texts``. Every random choice comes from ``seed`` and the query id, so the same
seed gives byte-identical output.

In sentence mode (``task.unit: sentences``) a row already holds every sentence of its documents:
the miners choose among the row's own non-evidence sentences (N0: at random from the same
documents; N1: by rank in the query's scoped run) and the row keeps its evidence sentences and the
``num_negatives`` chosen, in that order.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import datasets
from pydantic import Field

from rerank_lab.config import ListOf, Split, params_model, parse, section
from rerank_lab.errors import InputError
from rerank_lab.io.datasets import load_corpus
from rerank_lab.io.qrels import read_qrels
from rerank_lab.io.trec import Run, read_run
from rerank_lab.miners.base import MineContext, row_rng
from rerank_lab.schema import TEACHER_PREFIX, passage_text
from rerank_lab.task import task_config

log = logging.getLogger(__name__)


@params_model("mine")
class MineConfig:
    """The ``mine`` section: which ``miners.<name>`` entry, how many negatives, where."""

    miner: str = Field("mixed", min_length=1)
    num_negatives: int = Field(7, ge=1)
    seed: int = 42
    splits: ListOf[Split] = Field(("train", "validation"), min_length=1)


def load_runs(runs_root: Path, names: set[str], split: str, known: set[str]) -> dict[str, Run]:
    """The named runs of one split; a run naming a query the split lacks is an error."""
    runs: dict[str, Run] = {}
    for name in sorted(names):
        path = runs_root / name / f"{split}.trec"
        if not path.is_file():
            raise InputError(f"no {split} run for {name!r}", path=path, fix=f"add {split} to retrieve.splits or mine another run")
        run = read_run(path)
        stray = sorted(set(run) - known)
        if stray:
            raise InputError(
                f"run names query {stray[0]!r}, which the {split} split lacks",
                path=path,
                record=f"query {stray[0]}",
                fix="mine with the runs retrieved for this dataset",
            )
        runs[name] = run
    return runs


def run_names(miner) -> set[str]:
    """Which first-stage runs a miner reads (``run`` fields of it and of any miner it wraps)."""
    return {miner.run} if getattr(miner, "run", None) else set()


PER_TEXT = ("texts", "text_ids", "context_spans", "labels", "context_spans_relevance")


def keep_texts(row: dict, ids: list[str]) -> None:
    """Keep only the texts ``ids`` of ``row``, in that order (every per-text column follows)."""
    where = {t: i for i, t in enumerate(row["text_ids"])}
    order = [where[t] for t in ids]
    for col in PER_TEXT:
        if col in row:
            row[col] = [row[col][i] for i in order]


def mine(
    dd: datasets.DatasetDict,
    miner,
    cfg: MineConfig,
    corpus_path: Path,
    qrels_dir: Path,
    runs_root: Path,
    scorers: dict | None = None,
    within_row: bool = False,
) -> tuple[datasets.DatasetDict, dict[str, float]]:
    """The dataset with negatives appended on ``cfg.splits``, and counts for the metrics file.
    ``within_row`` (sentence mode): negatives are chosen among each row's own texts instead."""
    corpus_ds = load_corpus(corpus_path)
    corpus = {d["id"]: d for d in corpus_ds}
    out = dict(dd)
    metrics: dict[str, float] = {}
    for split in cfg.splits:
        if split not in dd:
            continue
        ds = dd[split]
        teachers = [c for c in ds.column_names if c.startswith(TEACHER_PREFIX)]
        if teachers:
            raise InputError(
                f"split {split} already has teacher columns {teachers}; their scores would not cover the mined negatives",
                path=str(corpus_path.parent),
                fix="run teacher-score after mine",
            )
        qrels = read_qrels(qrels_dir / f"{split}.tsv") if (qrels_dir / f"{split}.tsv").is_file() else {}
        rows = ds.to_list()
        relevant = {
            r["id"]: {d for d, g in qrels.get(r["id"], {}).items() if g > 0} | {t for t, lab in zip(r["text_ids"], r["labels"]) if lab}
            for r in rows
        }
        # dedup may have dropped rows the runs still answer: those are known queries, not strays
        known = {r["id"] for r in rows} | set(qrels)
        runs = load_runs(runs_root, run_names(miner), split, known)
        ctx = MineContext(corpus, sorted(corpus), runs, relevant, scorers or {}, within_row=within_row)
        short = 0
        for row in rows:
            negs = miner.negatives(ctx.for_row(row), row, cfg.num_negatives, row_rng(cfg.seed, row["id"]))
            short += len(negs) < cfg.num_negatives
            if within_row:
                keep_texts(row, [t for t, label in zip(row["text_ids"], row["labels"]) if label] + negs)
                continue
            for d in negs:
                doc = corpus[d]
                row["texts"].append(passage_text(doc["title"], doc["text"]))
                row["text_ids"].append(d)
                row["context_spans"].append(doc["context_spans"])
                row["labels"].append(0)
                if "context_spans_relevance" in row:
                    row["context_spans_relevance"].append([0] * len(doc["context_spans"]))
        out[split] = datasets.Dataset.from_list(rows, features=ds.features)
        metrics[f"{split}_rows"] = len(rows)
        metrics[f"{split}_negatives"] = sum(len(r["labels"]) - sum(r["labels"]) for r in rows)
        metrics[f"{split}_rows_short_of_negatives"] = short
        log.info("%s: mined %d negatives for %d rows", split, metrics[f"{split}_negatives"], len(rows))
    return datasets.DatasetDict(out), metrics


# --- the stage contract (rerank_lab.stage) ------------------------------------------------------


def configure(params: dict[str, Any]) -> tuple[MineConfig, Any, bool]:
    """The ``mine`` section, the built ``miners.<mine.miner>`` entry, and whether it mines within rows (sentence mode)."""
    from rerank_lab.miners import make_miner

    cfg = parse(MineConfig, section(params, "mine"), "mine")
    return cfg, make_miner(cfg.miner, section(params, f"miners.{cfg.miner}")), task_config(params).unit == "sentences"


def run(cfg: tuple[MineConfig, Any, bool], inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, float]:
    """``--input`` with negatives appended, into ``--output``; a reranking miner scores through ``--cache``."""
    from rerank_lab.io.datasets import load_dataset, save_dataset
    from rerank_lab.models import require_declared

    mine_cfg, miner, within_row = cfg
    scorers = {}
    if getattr(miner, "model", None):
        from rerank_lab.score_cache import ScoreCache
        from rerank_lab.scoring import PairScorer

        require_declared(str(miner.model), inputs["models"], f"miners.{mine_cfg.miner}.model")
        scorers[miner.model] = PairScorer(miner.model, miner.max_length, cache=ScoreCache(outputs.get("cache")))
    dd = load_dataset(inputs["input"])
    mined, metrics = mine(dd, miner, mine_cfg, inputs["corpus"], inputs["qrels"], inputs["runs"], scorers, within_row)
    save_dataset(mined, outputs["output"])
    return metrics
