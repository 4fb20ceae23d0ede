"""dedup: duplicate counts across splits, threshold semantics, normalisation, ratios by hand."""

from __future__ import annotations

import datasets
import pytest

from rerank_lab.config import DedupConfig
from rerank_lab.dedup import dedup, duplicate_ratio
from rerank_lab.errors import ConfigError
from rerank_lab.schema import to_dataset


def _row(rid: str, texts: list[str]) -> dict:
    return {
        "id": rid,
        "query": f"query {rid}",
        "texts": texts,
        "text_ids": [f"{rid}-{i}" for i in range(len(texts))],
        "context_spans": [[[0, len(t)]] for t in texts],
        "labels": [1] + [0] * (len(texts) - 1),
    }


# Normalised passages and how often each occurs across ALL splits:
#   alpha 3 (t1, t2, t4 -- differing only in case/white space), beta 2 (t1, t5), zeta 2 (t5, t6),
#   delta 2 (t3 and validation v1), theta 2 (twice inside validation v2), everything else once.
TRAIN = [
    _row("t1", ["Alpha passage.", "Beta passage."]),
    _row("t2", ["alpha   PASSAGE.", "Gamma passage."]),
    _row("t3", ["Delta passage."]),
    _row("t4", ["Epsilon passage.", "ALPHA passage."]),
    _row("t5", ["Zeta passage.", " Beta\tpassage. "]),
    _row("t6", ["Iota passage.", "zeta passage."]),
    _row("t7", ["Kappa passage."]),
]
VALIDATION = [
    _row("v1", ["Delta passage.", "Eta passage."]),
    _row("v2", ["Theta passage.", "Theta passage."]),
]
# train before: 12 occurrences, 8 distinct (alpha beta gamma delta epsilon zeta iota kappa) -> 1 - 8/12
TRAIN_RATIO_BEFORE = round(1 - 8 / 12, 6)


@pytest.fixture
def dd() -> datasets.DatasetDict:
    return datasets.DatasetDict({"train": to_dataset(TRAIN), "validation": to_dataset(VALIDATION)})


def test_no_repeats_allowed(dd):
    out, metrics = dedup(dd, DedupConfig(max_duplicates=0))
    # every train row but t7 holds a passage seen elsewhere (t3's delta is seen in validation)
    assert out["train"]["id"] == ["t7"]
    assert metrics == {
        "max_duplicates": 0,
        "train_rows_before": 7,
        "train_rows_after": 1,
        "train_duplicate_ratio_before": TRAIN_RATIO_BEFORE,  # 0.333333
        "train_duplicate_ratio_after": 0.0,
    }


def test_one_repeat_allowed(dd):
    out, metrics = dedup(dd, DedupConfig(max_duplicates=1))
    # alpha has 2 other copies -> t1, t2, t4 go; beta, zeta, delta have 1 -> t3, t5, t6 stay
    assert out["train"]["id"] == ["t3", "t5", "t6", "t7"]
    # after: delta, zeta, beta, iota, zeta, kappa -> 6 occurrences, 5 distinct
    assert metrics["train_rows_after"] == 4
    assert metrics["train_duplicate_ratio_before"] == TRAIN_RATIO_BEFORE
    assert metrics["train_duplicate_ratio_after"] == round(1 - 5 / 6, 6)  # 0.166667


def test_two_repeats_allowed_keeps_everything(dd):
    out, metrics = dedup(dd, DedupConfig(max_duplicates=2))
    assert out["train"]["id"] == ["t1", "t2", "t3", "t4", "t5", "t6", "t7"]
    assert metrics["train_duplicate_ratio_after"] == metrics["train_duplicate_ratio_before"] == TRAIN_RATIO_BEFORE


def test_none_disables_the_filter(dd):
    out, metrics = dedup(dd, DedupConfig(max_duplicates=None))
    assert metrics == {"max_duplicates": -1}
    assert out["train"].to_list() == dd["train"].to_list()
    assert out["validation"].to_list() == dd["validation"].to_list()


def test_non_filtered_splits_are_untouched(dd):
    out, metrics = dedup(dd, DedupConfig(max_duplicates=0, splits=("train",)))
    assert out["validation"].to_list() == dd["validation"].to_list()
    assert not any(k.startswith("validation_") for k in metrics)


def test_filtering_several_splits(dd):
    out, metrics = dedup(dd, DedupConfig(max_duplicates=0, splits=("train", "validation")))
    assert out["validation"]["id"] == []  # v1 shares delta with t3; v2 repeats theta inside itself
    assert out["validation"].features == dd["validation"].features
    # validation before: delta, eta, theta, theta -> 4 occurrences, 3 distinct
    assert metrics["validation_duplicate_ratio_before"] == 0.25
    assert metrics["validation_rows_before"] == 2
    assert metrics["validation_rows_after"] == 0
    assert metrics["validation_duplicate_ratio_after"] == 0.0


def test_case_and_white_space_count_as_duplicates():
    dd = datasets.DatasetDict(
        {"train": to_dataset([_row("a", ["Hello World"]), _row("b", ["  hello\nWORLD "]), _row("c", ["Hello, World"])])}
    )
    out, metrics = dedup(dd, DedupConfig(max_duplicates=0))
    assert out["train"]["id"] == ["c"]  # punctuation is not normalised away
    assert metrics["train_duplicate_ratio_before"] == round(1 - 2 / 3, 6)


def test_kept_rows_keep_every_column(dd):
    out, _ = dedup(dd, DedupConfig(max_duplicates=1))
    assert out["train"][1] == TRAIN[4]  # t5: id, query, texts, text_ids, spans, labels as written


def test_duplicate_ratio():
    assert duplicate_ratio([]) == 0.0
    assert duplicate_ratio(["a", "b"]) == 0.0
    assert duplicate_ratio(["a", "a", "a", "a"]) == 0.75


def test_negative_threshold_is_rejected():
    with pytest.raises(ConfigError, match=r"dedup max_duplicates must be >= 0 or null, got -1"):
        DedupConfig(max_duplicates=-1)
