"""Token ids of (query, passage) pairs under a length limit, without the tokenizer's overflow.

A fast tokenizer asked to truncate a pair (``tok(q, p, truncation="longest_first", max_length=L)``)
also builds the *overflowing* windows of both texts and merges them pairwise -- their cross
product, one full encoding each -- before transformers throws them away. For long texts that is
most of the work and nearly all of the memory: 25,343 ArguAna pairs at ``max_length`` 128 took
47 s and held 3 GB; 3,000 of them at ``max_length`` 16 were killed at 23 GB.

:func:`encode_pairs` gets the same ids by other means: it encodes each pair whole (special tokens
included, no truncation, so no overflow), works out how many tokens of each text the
``longest_first`` rule keeps (:func:`longest_first`, the tokenizers library's rule) and keeps
those -- from the start of each text, or from its end for a tokenizer that truncates on the left.
``tests/test_pair_tokens.py`` checks the ids and token type ids against the tokenizer's own
truncation, pair by pair, at several lengths.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CHUNK = 128  # pairs per tokenizer call: untruncated encodings of long texts live for one chunk only


def longest_first(n1: int, n2: int, budget: int) -> tuple[int, int]:
    """Tokens kept of two texts of ``n1`` and ``n2`` tokens so that at most ``budget`` remain:
    the longer text gives tokens first; when both must give, they end at half the budget each (the
    longer one keeps the odd token).

    >>> longest_first(3, 4, 10), longest_first(3, 20, 10), longest_first(20, 3, 10)
    ((3, 4), (3, 7), (7, 3))
    >>> longest_first(8, 20, 10), longest_first(20, 8, 11), longest_first(30, 40, 0)
    ((5, 5), (6, 5), (0, 0))
    """
    if n1 + n2 <= budget:
        return n1, n2
    swapped = n1 > n2
    short, long = (n2, n1) if swapped else (n1, n2)
    long = short if short > budget else max(short, budget - short)
    if short + long > budget:
        short = budget // 2
        long = short + budget % 2
    return (long, short) if swapped else (short, long)


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int) -> list[dict[str, np.ndarray]]:
    """Per pair, ``input_ids`` (and ``token_type_ids`` where the tokenizer makes them) as int32
    arrays, truncated ``longest_first`` to ``max_length`` tokens, special tokens included."""
    if not getattr(tokenizer, "is_fast", False):  # a Python tokenizer: its truncation builds no cross product
        return [
            {
                n: np.asarray(v, dtype=np.int32)
                for n, v in tokenizer(q, p, truncation="longest_first", max_length=max_length).items()
                if n != "attention_mask"
            }
            for q, p in pairs
        ]
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=True)
    left = tokenizer.truncation_side == "left"
    out: list[dict[str, np.ndarray]] = []
    for start in range(0, len(pairs), CHUNK):
        chunk = pairs[start : start + CHUNK]
        enc = tokenizer([q for q, _ in chunk], [p for _, p in chunk], truncation=False, return_attention_mask=False, verbose=False)
        names = list(enc)
        for j in range(len(chunk)):
            seq = np.array([-1 if s is None else s for s in enc.sequence_ids(j)], dtype=np.int8)
            first, second = seq == 0, seq == 1
            k1, k2 = longest_first(int(first.sum()), int(second.sum()), budget)
            keep = seq == -1
            for mask, k in ((first, k1), (second, k2)):
                rank = np.cumsum(mask[::-1])[::-1] if left else np.cumsum(mask)  # 1-based position within the text
                keep |= mask & (rank <= k)
            out.append({n: np.asarray(enc[n][j], dtype=np.int32)[keep] for n in names})
    return out
