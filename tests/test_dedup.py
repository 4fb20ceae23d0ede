"""dedup: duplicate counts within each split, threshold semantics, normalisation, ratios by hand,
the formats it applies to and the drop guard."""

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


# Normalised passages and how often each occurs in its split:
#   train: alpha 3 (t1, t2, t4 -- differing only in case/white space), beta 2 (t1, t5), zeta 2 (t5, t6),
#   everything else once (delta too: its other copy is in validation, which does not count for train);
#   validation: theta 2 (twice inside v2), delta and eta once.
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


MINED = "triplets"  # a format dedup applies to
ALL = 1.0  # max_drop_fraction that lets a test drop any share


def test_no_repeats_allowed(dd):
    out, metrics = dedup(dd, DedupConfig(max_duplicates=0, max_drop_fraction=ALL), MINED)
    # every train row but t3 and t7 holds a passage repeated in train
    assert out["train"]["id"] == ["t3", "t7"]
    assert metrics == {
        "max_duplicates": 0,
        "applied": 1,
        "train_rows_before": 7,
        "train_rows_after": 2,
        "train_duplicate_ratio_before": TRAIN_RATIO_BEFORE,  # 0.333333
        "train_duplicate_ratio_after": 0.0,
    }


def test_other_splits_do_not_decide_which_training_rows_survive(dd):
    """t3's passage also occurs in validation: it stays, and adding a test split that repeats
    every training passage changes nothing in train (before, counts spanned every split)."""
    cfg = DedupConfig(max_duplicates=0, max_drop_fraction=ALL)
    test = to_dataset([_row(f"x{i}", [t]) for i, r in enumerate(TRAIN) for t in r["texts"]])
    with_test = datasets.DatasetDict({**dd, "test": test})
    assert dedup(with_test, cfg, MINED)[0]["train"].to_list() == dedup(dd, cfg, MINED)[0]["train"].to_list()
    assert "t3" in dedup(dd, cfg, MINED)[0]["train"]["id"]


def test_one_repeat_allowed(dd):
    out, metrics = dedup(dd, DedupConfig(max_duplicates=1), MINED)
    # alpha has 2 other copies -> t1, t2, t4 go; beta, zeta, delta have 1 -> t3, t5, t6 stay
    assert out["train"]["id"] == ["t3", "t5", "t6", "t7"]
    # after: delta, zeta, beta, iota, zeta, kappa -> 6 occurrences, 5 distinct
    assert metrics["train_rows_after"] == 4
    assert metrics["train_duplicate_ratio_before"] == TRAIN_RATIO_BEFORE
    assert metrics["train_duplicate_ratio_after"] == round(1 - 5 / 6, 6)  # 0.166667


def test_two_repeats_allowed_keeps_everything(dd):
    out, metrics = dedup(dd, DedupConfig(max_duplicates=2), MINED)
    assert out["train"]["id"] == ["t1", "t2", "t3", "t4", "t5", "t6", "t7"]
    assert metrics["train_duplicate_ratio_after"] == metrics["train_duplicate_ratio_before"] == TRAIN_RATIO_BEFORE


def test_none_disables_the_filter(dd):
    out, metrics = dedup(dd, DedupConfig(max_duplicates=None), MINED)
    assert metrics == {"max_duplicates": -1, "applied": 0}
    assert out["train"].to_list() == dd["train"].to_list()
    assert out["validation"].to_list() == dd["validation"].to_list()


def test_non_filtered_splits_are_untouched(dd):
    out, metrics = dedup(dd, DedupConfig(max_duplicates=0, splits=("train",), max_drop_fraction=ALL), MINED)
    assert out["validation"].to_list() == dd["validation"].to_list()
    assert not any(k.startswith("validation_") for k in metrics)


def test_filtering_several_splits(dd):
    out, metrics = dedup(dd, DedupConfig(max_duplicates=0, splits=("train", "validation"), max_drop_fraction=ALL), MINED)
    assert out["validation"]["id"] == ["v1"]  # v2 repeats theta inside itself; v1's delta is in train, which does not count
    assert out["validation"].features == dd["validation"].features
    # validation before: delta, eta, theta, theta -> 4 occurrences, 3 distinct
    assert metrics["validation_duplicate_ratio_before"] == 0.25
    assert metrics["validation_rows_before"] == 2
    assert metrics["validation_rows_after"] == 1
    assert metrics["validation_duplicate_ratio_after"] == 0.0


def test_case_and_white_space_count_as_duplicates():
    dd = datasets.DatasetDict(
        {"train": to_dataset([_row("a", ["Hello World"]), _row("b", ["  hello\nWORLD "]), _row("c", ["Hello, World"])])}
    )
    out, metrics = dedup(dd, DedupConfig(max_duplicates=0, max_drop_fraction=ALL), MINED)
    assert out["train"]["id"] == ["c"]  # punctuation is not normalised away
    assert metrics["train_duplicate_ratio_before"] == round(1 - 2 / 3, 6)


def test_kept_rows_keep_every_column(dd):
    out, _ = dedup(dd, DedupConfig(max_duplicates=1), MINED)
    assert out["train"][1] == TRAIN[4]  # t5: id, query, texts, text_ids, spans, labels as written


def test_duplicate_ratio():
    assert duplicate_ratio([]) == 0.0
    assert duplicate_ratio(["a", "b"]) == 0.0
    assert duplicate_ratio(["a", "a", "a", "a"]) == 0.75


@pytest.mark.parametrize("fmt", ["beir", "scifact_rationales"])
def test_judged_document_sources_pass_through(dd, fmt):
    """A BEIR row's texts are its judged documents, which recur across queries by design: the
    NFCorpus default kept 25 of 2,590 training queries. Such formats are not filtered."""
    out, metrics = dedup(dd, DedupConfig(max_duplicates=0), fmt)
    assert metrics == {"max_duplicates": 0, "applied": 0}
    assert out["train"].to_list() == dd["train"].to_list()


def test_formats_are_a_param(dd):
    out, metrics = dedup(dd, DedupConfig(max_duplicates=1, formats=("beir",)), "beir")
    assert metrics["applied"] == 1 and out["train"]["id"] == ["t3", "t5", "t6", "t7"]


def test_dropping_more_than_the_allowed_share_stops_with_the_key_and_numbers(dd):
    with pytest.raises(
        ConfigError,
        match=r"^data/x: dedup would drop 5 of 7 train rows \(71\.4%\), more than dedup\.max_drop_fraction = 0\.5 "
        r"\(fix: raise dedup\.max_duplicates \(now 0\) or leave format 'triplets' out of dedup\.formats, "
        r"or raise dedup\.max_drop_fraction\)$",
    ):
        dedup(dd, DedupConfig(max_duplicates=0), MINED, path="data/x")
    dedup(dd, DedupConfig(max_duplicates=0, max_drop_fraction=5 / 7), MINED)  # exactly the share allowed: goes on


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_drop_fraction_must_be_a_share(bad):
    with pytest.raises(ConfigError, match=rf"^dedup\.max_drop_fraction: must be in \[0, 1\], got {bad}"):
        DedupConfig(max_drop_fraction=bad)


def test_negative_threshold_is_rejected():
    with pytest.raises(ConfigError, match=r"^dedup\.max_duplicates: must be >= 0 or null, got -1"):
        DedupConfig(max_duplicates=-1)
