"""The ``hardneg`` format: FlagEmbedding hard-negative JSONL; pos/neg scores become a teacher column."""

from __future__ import annotations

import math
from pathlib import Path

from rerank_lab.config import ConvertConfig
from rerank_lab.convert.common import Converted
from rerank_lab.convert.grouper import Grouper, input_files
from rerank_lab.errors import InputError
from rerank_lab.io.text import read_jsonl
from rerank_lab.schema import as_text


def _finite_number(x: object) -> bool:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:  # an integer too large for a float
        return False


def _hardneg_record(file: Path, no: int, obj: dict, group: Grouper) -> bool:
    """Add one record's passages; True when it carries pos/neg scores."""
    rec = f"line {no}"
    query = as_text(obj["query"], "query", path=file, record=rec)
    pos, neg = obj["pos"], obj["neg"]
    if not isinstance(pos, list) or not isinstance(neg, list) or not pos:
        raise InputError("pos must be a non-empty list and neg a list", path=file, record=rec, fix='write "pos": ["..."], "neg": ["..."]')
    pos = [as_text(t, f"pos[{i}]", path=file, record=rec) for i, t in enumerate(pos)]
    neg = [as_text(t, f"neg[{i}]", path=file, record=rec) for i, t in enumerate(neg)]
    has_scores = "pos_scores" in obj or "neg_scores" in obj
    pos_s = obj.get("pos_scores") if has_scores else [None] * len(pos)
    neg_s = obj.get("neg_scores") if has_scores else [None] * len(neg)
    if not isinstance(pos_s, list) or not isinstance(neg_s, list) or len(pos_s) != len(pos) or len(neg_s) != len(neg):
        raise InputError(
            "pos_scores/neg_scores do not line up with pos/neg",
            path=file,
            record=f"line {no}",
            fix="give one score per passage in both lists, or no scores at all",
        )
    if has_scores and not all(_finite_number(s) for s in [*pos_s, *neg_s]):
        raise InputError(
            "pos_scores/neg_scores must be numbers, all finite", path=file, record=rec, fix="write one finite number per passage"
        )
    for texts, scores, label in ((pos, pos_s, 1), (neg, neg_s, 0)):
        for text, score in zip(texts, scores):
            group.add(no, query, text, label, score)
    return has_scores


def convert_hardneg(path: Path, cfg: ConvertConfig) -> Converted:
    """Convert FlagEmbedding hard-negative JSONL; pos/neg scores become a teacher column.

    Scores come on every record or on none: a teacher column with holes cannot be written, and
    dropping it for a few unscored records would lose the teacher without a word.
    """
    group = Grouper(path)
    first: dict[bool, str] = {}  # scored or not -> where the first such record is
    for file in input_files(path, (".jsonl", ".jsonl.gz")):
        group.path = file
        for no, obj in read_jsonl(file, required=("query", "pos", "neg")):
            scored = _hardneg_record(file, no, obj, group)
            first.setdefault(scored, f"{file}: line {no}")
            if len(first) == 2:
                raise InputError(
                    f"{'has' if scored else 'has no'} pos_scores/neg_scores, unlike {first[not scored]}",
                    path=file,
                    record=f"line {no}",
                    fix="give pos_scores and neg_scores on every line (the teacher column) or on none",
                )
    return group.converted(cfg, teacher=cfg.teacher_name if first.get(True) else None)
