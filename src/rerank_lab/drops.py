"""One guard for every stage that drops rows: stop instead of silently gutting a split.

A filter that is right for one source can be wrong for another (passage-frequency dedup keeps 25
of 2,590 NFCorpus training queries, because BEIR rows hold judged documents that recur by
design). Every stage that drops rows calls :func:`check_drop` with the share its params allow.
"""

from __future__ import annotations

from rerank_lab.errors import ConfigError


def check_drop(before: int, after: int, limit: float, *, stage: str, split: str, key: str, fix: str, path: str | None = None) -> None:
    """Raise when ``before - after`` rows are more than ``limit`` of ``before``.

    ``key`` is the params key that sets ``limit`` (named in the message); ``fix`` says what else
    the user can change.

    >>> check_drop(100, 60, 0.5, stage="dedup", split="train", key="dedup.max_drop_fraction", fix="-")
    >>> check_drop(2590, 25, 0.5, stage="dedup", split="train", key="dedup.max_drop_fraction", fix="x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rerank_lab.errors.ConfigError: dedup would drop 2565 of 2590 train rows (99.0%), more than dedup.max_drop_fraction = 0.5 (fix: ...)
    """
    dropped = before - after
    if before and dropped / before > limit:
        raise ConfigError(
            f"{stage} would drop {dropped} of {before} {split} rows ({dropped / before:.1%}), more than {key} = {limit}",
            path=path,
            fix=f"{fix}, or raise {key}",
        )
