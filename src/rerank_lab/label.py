"""label: fill ``context_spans_relevance`` for every span of every text with a pluggable pruner,
and score those labels against gold sentence evidence where the dataset has it.

The pruner (``pruners.<label.pruner>``, :mod:`rerank_lab.pruners`) scores each (query, span
text); a span is kept (1) when its score reaches the threshold. ``label.threshold: null`` fits it
on the validation split: the score that maximises F-beta (``label.beta``; 2 weighs recall, since a
pruner that drops evidence costs more than one that keeps a little noise) of the kept spans
against gold. Quality per split -- span precision, recall, F1, F2 and compression (the share of
spans dropped) -- goes to the metrics; the validation split's figures are fitted on, the test
split's are held out.

Gold is the input's own ``context_spans_relevance`` (SciFact's evidence sentences, written by
convert); a split without it gets compression only. The output dataset is the input with that
column replaced by the pruner's labels (Open Provence's pruner-label format).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from pydantic import Field
from sklearn.metrics import fbeta_score, precision_recall_curve, precision_score, recall_score

from rerank_lab.config import ListOf, Number, Split, params_model, parse, section
from rerank_lab.errors import ConfigError

log = logging.getLogger(__name__)
RELEVANCE = "context_spans_relevance"


@params_model("label")
class LabelConfig:
    """``label``: which ``pruners.<name>`` entry labels the spans, at which threshold."""

    pruner: str = Field("cross-encoder", min_length=1)
    threshold: Number | None = None  # null: fitted on the validation split (best F-beta against gold)
    beta: Number = Field(2.0, gt=0)
    splits: ListOf[Split] = Field(("train", "validation", "test"), min_length=1)
    debug_limit: int | None = Field(None, ge=1)  # label only each split's first N rows (the output holds only those): a quick look


@dataclasses.dataclass
class Spans:
    """One split's spans, flattened: the pairs scored, where each came from, and gold if known."""

    pairs: list[tuple[str, str]]
    records: list[str]
    shape: list[list[int]]  # per row, per text: its number of spans
    gold: list[int] | None


def split_spans(ds: datasets.Dataset) -> Spans:
    """Every (query, span text) of a split, row by row, text by text, span by span."""
    pairs, records, shape, gold = [], [], [], []
    has_gold = RELEVANCE in ds.column_names
    for row in ds:
        shape.append([len(spans) for spans in row["context_spans"]])
        for k, (text, spans) in enumerate(zip(row["texts"], row["context_spans"])):
            for j, (start, end) in enumerate(spans):
                pairs.append((row["query"], text[start:end]))
                records.append(f"record {row['id']}, text {k}, span {j}")
            if has_gold:
                gold += [int(x) for x in row[RELEVANCE][k]]
    return Spans(pairs, records, shape, gold if has_gold else None)


def fit_threshold(scores: np.ndarray, gold: np.ndarray, beta: float) -> float:
    """The score at which keeping ``scores >= t`` has the best F-beta against ``gold`` (the lowest
    such score on a tie: keep more).

    >>> fit_threshold(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]), beta=1.0)
    0.35
    """
    precision, recall, thresholds = precision_recall_curve(gold, scores)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (1 + beta**2) * precision * recall / (beta**2 * precision + recall)
    f = np.nan_to_num(f[:-1])  # the curve's last point has no threshold
    return float(thresholds[int(np.flatnonzero(f == f.max())[0])])


def quality(gold: np.ndarray | None, kept: np.ndarray) -> dict[str, float]:
    """Span precision, recall, F1, F2 against gold (when known) and compression (share dropped).

    >>> quality(np.array([1, 0, 1, 0]), np.array([1, 1, 0, 0]))
    {'spans': 4, 'compression': 0.5, 'precision': 0.5, 'recall': 0.5, 'f1': 0.5, 'f2': 0.5}
    """
    out: dict[str, float] = {"spans": len(kept), "compression": round(float(1 - kept.mean()), 6) if len(kept) else 0.0}
    if gold is not None:
        out["precision"] = round(float(precision_score(gold, kept, zero_division=0)), 6)
        out["recall"] = round(float(recall_score(gold, kept, zero_division=0)), 6)
        out["f1"] = round(float(fbeta_score(gold, kept, beta=1.0, zero_division=0)), 6)
        out["f2"] = round(float(fbeta_score(gold, kept, beta=2.0, zero_division=0)), 6)
    return out


def relabelled(ds: datasets.Dataset, spans: Spans, kept: np.ndarray) -> datasets.Dataset:
    """``ds`` with ``context_spans_relevance`` = the kept flags, shaped like ``context_spans``."""
    from rerank_lab.schema import OPTIONAL_FEATURES

    values, i = [], 0
    for per_text in spans.shape:
        row = []
        for n in per_text:
            row.append([int(x) for x in kept[i : i + n]])
            i += n
        values.append(row)
    if RELEVANCE in ds.column_names:
        ds = ds.remove_columns(RELEVANCE)
    return ds.add_column(RELEVANCE, values, feature=OPTIONAL_FEATURES[RELEVANCE])


def label(dd: datasets.DatasetDict, pruner: Any, cfg: LabelConfig, cache: Any) -> tuple[datasets.DatasetDict, dict[str, Any]]:
    """Every span of ``cfg.splits`` labelled; the metrics: threshold and quality per split."""
    if cfg.debug_limit:
        dd = datasets.DatasetDict({s: ds.select(range(min(cfg.debug_limit, len(ds)))) for s, ds in dd.items()})
    spans = {s: split_spans(dd[s]) for s in cfg.splits if s in dd}
    scores = {s: np.asarray(pruner.scores(sp.pairs, sp.records, cache), dtype=np.float64) for s, sp in spans.items()}
    threshold = cfg.threshold
    if threshold is None:
        val = spans.get("validation")
        if val is None or val.gold is None or not any(val.gold):
            raise ConfigError(
                "label.threshold is null (fit on the validation split), but that split has no gold span labels",
                fix="set label.threshold to a number, or label a dataset with sentence evidence (scifact_rationales)",
            )
        threshold = fit_threshold(scores["validation"], np.asarray(val.gold), cfg.beta)
    metrics: dict[str, Any] = {"threshold": float(threshold), "threshold_fitted": cfg.threshold is None}
    out = dict(dd)
    for split, sp in spans.items():
        kept = (scores[split] >= threshold).astype(np.int64)
        metrics[split] = quality(np.asarray(sp.gold) if sp.gold is not None else None, kept)
        out[split] = relabelled(dd[split], sp, kept)
        log.info("%s: kept %d of %d spans", split, int(kept.sum()), len(kept))
    return datasets.DatasetDict(out), metrics


# --- the stage contract (rerank_lab.stage) ------------------------------------------------------


def configure(params: dict[str, Any]) -> tuple[LabelConfig, Any]:
    """The ``label`` section and the built ``pruners.<label.pruner>`` entry."""
    from rerank_lab.pruners import make_pruner

    cfg = parse(LabelConfig, section(params, "label"), "label")
    return cfg, make_pruner(cfg.pruner, section(params, f"pruners.{cfg.pruner}"))


def run(cfg: tuple[LabelConfig, Any], inputs: dict[str, Any], outputs: dict[str, Path]) -> dict[str, Any]:
    """``--input`` with every span labelled, into ``--output``; quality against gold is the metrics."""
    from rerank_lab.io.datasets import load_dataset, save_dataset
    from rerank_lab.models import require_declared
    from rerank_lab.pruners.cross_encoder import TRAINED
    from rerank_lab.score_cache import ScoreCache

    label_cfg, pruner = cfg
    model = getattr(pruner, "model", None)
    if model == TRAINED:
        if inputs.get("reranker") is None:
            raise ConfigError(
                f"pruners.{label_cfg.pruner}.model is 'trained', but no --reranker was given", fix="pass the train stage's model folder"
            )
        pruner = dataclasses.replace(pruner, model=str(inputs["reranker"]))
    elif model:
        require_declared(str(model), inputs["models"], f"pruners.{label_cfg.pruner}.model")
    labelled, metrics = label(load_dataset(inputs["input"]), pruner, label_cfg, ScoreCache(outputs.get("cache")))
    save_dataset(labelled, outputs["output"])
    return metrics


def describe(cfg: tuple[LabelConfig, Any], metrics: dict[str, Any]) -> str:
    test = metrics.get("test", {})
    shown = ", ".join(f"{k} {test[k]:.3f}" for k in ("precision", "recall", "f2", "compression") if k in test)
    return f"labelled spans at threshold {metrics['threshold']:.4f}" + (f"; test: {shown}" if shown else "")
