"""dedup: drop rows whose passages repeat too often (Open Provence's filter), for mined sources.

Each passage is hashed after normalising case and white space. Within one filtered split, a
passage's *duplicate count* is how many other times it appears in that split; a row is dropped
when any of its passages has a count above ``max_duplicates`` (0 = no repeats at all). Counting
stays inside the split being filtered: which training rows survive must not depend on the
validation or test queries.

The filter is for sources whose texts were *mined* (``triplets``, ``hardneg``: a passage that
recurs across many queries is a generic passage). In sources whose texts are the *judged*
documents (``beir``, ``scifact_rationales``), relevant documents recur across queries by design --
NFCorpus would lose 99% of its training queries -- so ``dedup.formats`` names the formats it
applies to and other datasets pass through unchanged. Either way, a split losing more than
``max_drop_fraction`` of its rows stops the stage with a message instead of going on silently.
The duplicate ratio (share of passage occurrences that repeat an earlier one) is reported
before and after, per filtered split.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import datasets

from rerank_lab.config import DedupConfig, convert_config, parse, section
from rerank_lab.drops import check_drop
from rerank_lab.schema import text_hash


def duplicate_ratio(hashes: list[str]) -> float:
    """Share of occurrences that repeat an earlier one.

    >>> duplicate_ratio(["a", "b", "a", "a"])
    0.5
    """
    return 1 - len(set(hashes)) / len(hashes) if hashes else 0.0


def dedup(dd: datasets.DatasetDict, cfg: DedupConfig, fmt: str, path: str | None = None) -> tuple[datasets.DatasetDict, dict[str, float]]:
    """The filtered dataset and its metrics (ratios and row counts before/after).

    ``fmt`` is the dataset's source format (``convert.sources.<ds>.format``); only formats in
    ``cfg.formats`` are filtered.
    """
    applied = cfg.max_duplicates is not None and fmt in cfg.formats
    metrics: dict[str, float] = {"max_duplicates": -1 if cfg.max_duplicates is None else cfg.max_duplicates, "applied": int(applied)}
    out = {}
    for split, ds in dd.items():
        if not applied or split not in cfg.splits:
            out[split] = ds
            continue
        rows = [[text_hash(t) for t in texts] for texts in ds["texts"]]
        counts = Counter(h for row in rows for h in row)  # this split only
        keep = [i for i, row in enumerate(rows) if all(counts[h] - 1 <= cfg.max_duplicates for h in row)]
        check_drop(
            len(rows),
            len(keep),
            cfg.max_drop_fraction,
            stage="dedup",
            split=split,
            key="dedup.max_drop_fraction",
            fix=f"raise dedup.max_duplicates (now {cfg.max_duplicates}) or leave format {fmt!r} out of dedup.formats",
            path=path,
        )
        out[split] = ds.select(keep)
        before = [h for row in rows for h in row]
        after = [h for i in keep for h in rows[i]]
        metrics.update(
            {
                f"{split}_rows_before": len(rows),
                f"{split}_rows_after": len(keep),
                f"{split}_duplicate_ratio_before": round(duplicate_ratio(before), 6),
                f"{split}_duplicate_ratio_after": round(duplicate_ratio(after), 6),
            }
        )
    return datasets.DatasetDict(out), metrics


# --- the stage contract (rerank_lab.stage) ------------------------------------------------------


def configure(params: dict[str, Any], source: str) -> tuple[DedupConfig, str]:
    """The ``dedup`` section and the source's format (``convert.sources.<source>.format``)."""
    return parse(DedupConfig, section(params, "dedup"), "dedup"), convert_config(params, source).format


def run(cfg: tuple[DedupConfig, str], inputs: dict[str, Any], outputs: dict[str, Path]) -> dict[str, float]:
    """``--input`` filtered into ``--output``."""
    from rerank_lab.io.datasets import load_dataset, save_dataset

    dedup_cfg, fmt = cfg
    filtered, metrics = dedup(load_dataset(inputs["input"]), dedup_cfg, fmt, path=str(inputs["input"]))
    save_dataset(filtered, outputs["output"])
    return metrics
