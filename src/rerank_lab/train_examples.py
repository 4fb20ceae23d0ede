"""How the train stage lays the contract's rows out for a loss (see :mod:`rerank_lab.train` for the
table of formats and labels): lists, groups, pairs and teacher targets, graded gains, seeded
negative choice, and the dev samples of the training-time evaluator.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

import datasets

from rerank_lab.drops import check_drop
from rerank_lab.errors import InputError
from rerank_lab.io.qrels import Qrels
from rerank_lab.schema import TEACHER_PREFIX

if TYPE_CHECKING:
    from rerank_lab.train import TrainConfig

log = logging.getLogger(__name__)


def _split_row(row: dict, cfg: TrainConfig, gains: list[float]) -> tuple[list[int], list[int]]:
    pos = [i for i, label in enumerate(row["labels"]) if label]
    neg = [i for i, label in enumerate(row["labels"]) if not label]
    random.Random(f"{cfg.seed}:{row['id']}").shuffle(neg)
    return anchors(pos, gains, cfg.max_positives_per_query, seed=f"{cfg.seed}:{row['id']}:anchors"), neg[: cfg.list_size - 1]


def anchors(pos: list[int], gains: list[float], limit: int | None, seed: str) -> list[int]:
    """The positives that anchor a query's examples: all of them, or the ``limit`` highest-graded
    (ties in a seeded random order), kept in their row order.

    >>> anchors([0, 1, 2, 3], [2.0, 1.0, 2.0, 1.0], None, seed="s")
    [0, 1, 2, 3]
    >>> anchors([0, 1, 2, 3], [2.0, 1.0, 2.0, 1.0], 2, seed="s")
    [0, 2]
    >>> len(anchors([0, 1, 2, 3], [1.0] * 4, 3, seed="s"))
    3
    """
    if limit is None or len(pos) <= limit:
        return pos
    order = list(pos)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda i: -gains[i])  # stable: equal grades keep the seeded order
    return sorted(order[:limit])


def text_gains(row: dict, qrels: Qrels | None) -> list[float]:
    """Per text: the qrels grade of a labelled positive when it is > 0, else the 0/1 label.

    >>> row = {"id": "q1", "text_ids": ["d1", "d2", "d3", "d4"], "labels": [1, 1, 0, 1]}
    >>> text_gains(row, {"q1": {"d1": 2, "d2": 1, "d3": 2, "d4": 0}})  # d3 unlabelled, d4 graded 0
    [2.0, 1.0, 0.0, 1.0]
    >>> text_gains(row, None)
    [1.0, 1.0, 0.0, 1.0]
    """
    judged = (qrels or {}).get(row["id"], {})
    return [float(judged[d]) if label and judged.get(d, 0) > 0 else float(label) for d, label in zip(row["text_ids"], row["labels"])]


def build_examples(
    ds: datasets.Dataset, fmt: str, cfg: TrainConfig, path: str = "train split", qrels: Qrels | None = None, section: str = "train"
) -> datasets.Dataset:
    """Lay the contract's rows out in the format a loss trains on (see rerank_lab.losses).

    ``qrels`` (this split's graded judgments) give list labels with ``gains: graded``; without
    them a list's labels are the 0/1 labels. A group has exactly ``list_size - 1`` negatives, so a
    row with fewer (a short abstract's sentences, in sentence mode) is left out, counted against
    ``<section>.max_drop_fraction`` (``section``: the params section ``cfg`` came from).
    """
    teacher_col = f"{TEACHER_PREFIX}{cfg.teacher}" if cfg.teacher else None
    if fmt.startswith("teacher") and teacher_col not in ds.column_names:
        have = [c[len(TEACHER_PREFIX) :] for c in ds.column_names if c.startswith(TEACHER_PREFIX)]
        raise InputError(
            f"no teacher column {teacher_col!r} (teachers present: {have or 'none'})",
            path=path,
            fix="add it with the teacher-score stage, or set train.teacher to a present one",
        )
    rows = ds.to_list()
    if cfg.no_positive == "skip" and fmt not in ("pairs", "classes", "teacher-pairs"):
        kept = [r for r in rows if any(r["labels"])]  # pointwise losses still learn from all-negative rows
        fix = "these rows have no positive text: check the dataset's labels, or train a pointwise loss (bce) that uses them"
        key = f"{section}.max_drop_fraction"
        check_drop(len(rows), len(kept), cfg.max_drop_fraction, stage=section, split="train", key=key, fix=fix, path=path)
        rows = kept
    n_neg = cfg.list_size - 1
    if fmt in ("groups", "teacher-groups"):
        kept = [r for r in rows if sum(1 for label in r["labels"] if not label) >= n_neg]
        fix = f"mine more negatives (mine.num_negatives) or lower {section}.list_size (a group has list_size - 1 negatives)"
        key = f"{section}.max_drop_fraction"
        check_drop(len(rows), len(kept), cfg.max_drop_fraction, stage=section, split="train", key=key, fix=fix, path=path)
        if len(kept) < len(rows):
            log.warning(
                "%s: %d of %d train rows have fewer than %d negatives: left out of the groups",
                section,
                len(rows) - len(kept),
                len(rows),
                n_neg,
            )
        rows = kept
    if cfg.max_queries:
        rows = rows[: cfg.max_queries]
    out: list[dict[str, Any]] = []
    for row in rows:
        texts, labels = row["texts"], row["labels"]
        gains = text_gains(row, qrels) if cfg.gains == "graded" else [float(x) for x in labels]
        pos, neg = _split_row(row, cfg, gains)
        teacher = row.get(teacher_col) if teacher_col else None
        if fmt in ("pairs", "classes", "teacher-pairs"):
            for i in pos + neg:
                target = float(teacher[i]) if fmt == "teacher-pairs" else (int(labels[i]) if fmt == "classes" else float(labels[i]))
                out.append({"query": row["query"], "text": texts[i], "label": target})
            continue
        if not pos:
            raise InputError(
                f"query {row['id']} has no positive text, which a {fmt.split('-')[-1]}-format loss needs",
                path=path,
                record=f"record {row['id']}",
                fix="drop queries without a positive (e.g. NOINFO claims) or use a pointwise loss (bce)",
            )
        if fmt == "lists":
            for p in pos:
                lower = [i for i, label in enumerate(labels) if label and gains[i] < gains[p]]  # empty with binary gains
                random.Random(f"{cfg.seed}:{row['id']}:{p}").shuffle(lower)
                idx = ([p, *lower[: (cfg.list_size - 1) // 2], *neg])[: cfg.list_size]
                out.append({"query": row["query"], "docs": [texts[i] for i in idx], "labels": [gains[i] for i in idx]})
            continue
        for p in pos:
            ex = {"query": row["query"], "positive": texts[p], **{f"negative_{j + 1}": texts[i] for j, i in enumerate(neg)}}
            if fmt == "teacher-groups":
                ex["label"] = [float(teacher[i]) for i in [p, *neg]]
            out.append(ex)
    if not out:
        raise InputError("no training examples", path=path, fix="check that the train split has rows with texts")
    return datasets.Dataset.from_list(out)


def dev_samples(ds: datasets.Dataset | None, limit: int) -> list[dict]:
    """Validation rows as CrossEncoderRerankingEvaluator samples (rows with a positive only)."""
    if ds is None:
        return []
    samples = []
    for row in ds.to_list():
        pos = [t for t, label in zip(row["texts"], row["labels"]) if label]
        if pos and len(pos) < len(row["texts"]):
            samples.append({"query": row["query"], "positive": pos, "documents": list(row["texts"])})
        if len(samples) == limit:
            break
    return samples
