"""dedup: drop rows whose passages repeat too often across the dataset (Open Provence's filter).

Each passage is hashed after normalising case and white space. A passage's *duplicate count* is
how many other times it appears across all splits. A row of a filtered split is dropped when any
of its passages has a duplicate count above ``max_duplicates`` (0 = no repeats at all).
The duplicate ratio (share of passage occurrences that repeat an earlier one) is reported
before and after, per filtered split.
"""

from __future__ import annotations

from collections import Counter

import datasets

from rerank_lab.config import DedupConfig
from rerank_lab.schema import text_hash


def duplicate_ratio(hashes: list[str]) -> float:
    """Share of occurrences that repeat an earlier one.

    >>> duplicate_ratio(["a", "b", "a", "a"])
    0.5
    """
    return 1 - len(set(hashes)) / len(hashes) if hashes else 0.0


def dedup(dd: datasets.DatasetDict, cfg: DedupConfig) -> tuple[datasets.DatasetDict, dict[str, float]]:
    """The filtered dataset and its metrics (ratios and row counts before/after)."""
    hashes = {s: [[text_hash(t) for t in texts] for texts in dd[s]["texts"]] for s in dd}
    counts = Counter(h for rows in hashes.values() for row in rows for h in row)
    out = {}
    metrics: dict[str, float] = {"max_duplicates": -1 if cfg.max_duplicates is None else cfg.max_duplicates}
    for split, ds in dd.items():
        rows = hashes[split]
        if split not in cfg.splits or cfg.max_duplicates is None:
            out[split] = ds
            continue
        keep = [i for i, row in enumerate(rows) if all(counts[h] - 1 <= cfg.max_duplicates for h in row)]
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
