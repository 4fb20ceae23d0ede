"""Pair token ids without the tokenizer's overflow: the same ids as its own truncation, every pair."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest

from rerank_lab.pair_tokens import encode_pairs, longest_first

ARGUANA = Path(__file__).resolve().parents[1] / "data" / "raw" / "arguana"


@pytest.fixture(scope="module")
def tokenizer(minilm_cross_encoder):
    return minilm_cross_encoder.tokenizer


@pytest.fixture(scope="module")
def long_pairs() -> list[tuple[str, str]]:
    """ArguAna: arguments as queries (up to ~1,100 tokens) against arguments; plus edge cases."""
    with gzip.open(ARGUANA / "queries.jsonl.gz", "rt", encoding="utf-8") as f:
        queries = [json.loads(line)["text"] for _, line in zip(range(40), f)]
    with gzip.open(ARGUANA / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        docs = [json.loads(line)["text"] for _, line in zip(range(200), f)]
    rng = random.Random(0)
    pairs = [(q, d) for q in queries for d in rng.sample(docs, 3)]
    return pairs + [("a", "b"), ("", docs[0]), (queries[0], ""), ("short query", docs[0]), (docs[0], "short passage")]


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("max_length", [16, 63, 128, 512])
def test_ids_equal_the_tokenizers_own_truncation(tokenizer, long_pairs, max_length: int, side: str, monkeypatch):
    monkeypatch.setattr(tokenizer, "truncation_side", side)
    ours = encode_pairs(tokenizer, long_pairs, max_length)
    for (q, p), got in zip(long_pairs, ours, strict=True):
        # a batch of one pair per call (a whole batch of these at max_length 16 exhausts memory);
        # a batch, as the scorer tokenized before: a single call reads an empty passage as no pair
        want = tokenizer([q], [p], truncation="longest_first", max_length=max_length)
        assert got["input_ids"].tolist() == want["input_ids"][0]
        assert got["token_type_ids"].tolist() == want["token_type_ids"][0]
        assert got["input_ids"].dtype == np.int32 and len(got["input_ids"]) <= max_length


def test_the_tokenizer_is_never_asked_to_truncate(tokenizer, long_pairs, monkeypatch):
    """Truncating a pair makes the fast tokenizer build the cross product of both texts' overflow
    windows (25,343 ArguAna pairs: 3 GB; at max_length 16, 3,000 pairs: killed at 23 GB)."""
    calls = []
    real = type(tokenizer).__call__
    monkeypatch.setattr(type(tokenizer), "__call__", lambda self, *a, **kw: calls.append(kw.get("truncation")) or real(self, *a, **kw))
    encode_pairs(tokenizer, long_pairs * 3, 64)
    assert calls and set(calls) == {False}
    assert len(calls) == -(-len(long_pairs) * 3 // 128)  # chunks of CHUNK pairs


def test_longest_first_matches_the_rule_on_every_small_case():
    """Against removing one token at a time from the longer text; on a tie from the text that was
    shorter to begin with (the first when they began equal): the originally longer one keeps the
    odd token, as in the tokenizers library."""
    for budget in range(0, 12):
        for n1 in range(0, 15):
            for n2 in range(0, 15):
                a, b = n1, n2
                while a + b > budget:
                    if a > b or (a == b and n1 <= n2):
                        a -= 1
                    else:
                        b -= 1
                assert longest_first(n1, n2, budget) == (a, b), (n1, n2, budget)
