"""PairScorer and the ScoreCache shared by experiments, with the real MiniLM cross-encoder."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from rerank_lab.errors import ConfigError
from rerank_lab.score_cache import ScoreCache
from rerank_lab.scoring import PairScorer, model_key, pair_key
from tests.conftest import MINILM, MINILM_MAX_LENGTH

QUERY = "What makes ocean tides rise and fall?"
SHARED = [
    (QUERY, "Ocean tides rise and fall because the Moon's gravity pulls on the water."),
    (QUERY, "Surfers ride waves built by distant storms."),
    (QUERY, "Bread rises because yeast produces carbon dioxide."),
    ("How do bees make honey?", "Bees evaporate water from flower nectar."),
    ("How do bees make honey?", "Chess openings aim to control the centre of the board."),
    ("Why is the sky blue?", "Air scatters short wavelengths more strongly than long ones, so the sky looks blue to us."),
]
NEW = [
    (QUERY, "Spring tides happen when the Sun and Moon line up."),
    ("Why is the sky blue?", "Sunsets look red."),
    ("How do vaccines work?", "A vaccine shows the immune system a harmless piece of a pathogen."),
]


def test_a_second_experiment_only_scores_new_pairs(minilm_scorer_factory, tmp_path):
    path = tmp_path / "scores.sqlite"

    first = minilm_scorer_factory(cache=ScoreCache(path))
    s1 = first.score(SHARED)
    assert first.forward_calls > 0
    assert first.pairs_scored == len(SHARED) == 6
    assert first.cache.hits == 0

    second = minilm_scorer_factory(cache=ScoreCache(path))  # another experiment: new objects, same file
    s2 = second.score(SHARED + NEW)
    assert second.pairs_scored == len(NEW) == 3
    assert second.cache.hits == 6
    assert second.forward_calls >= 1
    assert s2[:6].tolist() == s1.tolist()  # read back from the cache, bit for bit

    # the new pairs' scores are what an uncached scorer computes
    fresh = minilm_scorer_factory().score(NEW)
    np.testing.assert_allclose(s2[6:], fresh, atol=1e-5)

    third = minilm_scorer_factory(cache=ScoreCache(path))
    s3 = third.score(SHARED)
    assert third.forward_calls == 0
    assert third.pairs_scored == 0
    assert s3.tolist() == s1.tolist()


def test_within_one_call_duplicates_are_scored_once(minilm_scorer_factory):
    scorer = minilm_scorer_factory()
    scores = scorer.score([SHARED[0], SHARED[1], SHARED[0], SHARED[0]])
    assert scorer.pairs_scored == 2
    assert scores[0] == scores[2] == scores[3] != scores[1]
    again = scorer.score([SHARED[1]])  # the in-memory cache of this scorer
    assert scorer.pairs_scored == 2 and again[0] == scores[1]


def test_the_cache_keys_by_model(minilm_scorer_factory, tmp_path):
    cache = ScoreCache(tmp_path / "scores.sqlite")
    minilm_scorer_factory(cache=cache).score(SHARED[:2])
    other_key = model_key(MINILM, 128)
    assert other_key != model_key(MINILM, MINILM_MAX_LENGTH)  # max_length changes the scores
    assert cache.get(other_key, ["anything"]) == {}
    assert set(cache.get(model_key(MINILM, MINILM_MAX_LENGTH), [pair_key(*p) for p in SHARED])) == {pair_key(*p) for p in SHARED[:2]}


def test_fresh_loads_score_alike(minilm_scorer_factory):
    """The packaged MiniLM has no classification head: each load must draw the same fresh one,
    or two experiments would cache different scores under one model key."""
    loaded_again = PairScorer(MINILM, MINILM_MAX_LENGTH, device="cpu")  # its own model load
    np.testing.assert_allclose(loaded_again.score(SHARED), minilm_scorer_factory().score(SHARED), atol=1e-6)


def test_batches_respect_the_token_budget(minilm_scorer_factory):
    scorer = minilm_scorer_factory(batch_tokens=20)
    # longest first: 10 (i1), 7 (i3) -> 2 * 10 = 20 fits; adding 5 (i0) would be 3 * 10 = 30; 5, 3 -> 2 * 5 = 10
    assert scorer._batches([5, 10, 3, 7]) == [[1, 3], [0, 2]]
    assert scorer._batches([4, 4, 4, 4, 4, 4]) == [[0, 1, 2, 3, 4], [5]]  # 5 * 4 = 20 fits, 6 * 4 does not
    assert scorer._batches([30, 2]) == [[0], [1]]  # a pair longer than the budget still gets a batch alone
    assert scorer._batches([]) == []
    assert minilm_scorer_factory(batch_tokens=1000)._batches([5, 10, 3, 7]) == [[1, 3, 0, 2]]


def test_scores_do_not_depend_on_batch_tokens(minilm_scorer_factory):
    pairs = SHARED + NEW
    narrow, wide = minilm_scorer_factory(batch_tokens=64), minilm_scorer_factory(batch_tokens=100000)
    a, b = narrow.score(pairs), wide.score(pairs)
    assert wide.forward_calls == 1
    assert narrow.forward_calls > 3  # 9 pairs of 10-30 tokens under a 64-token budget
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_scoring_never_asks_the_tokenizer_to_truncate_and_keeps_no_per_pair_state(minilm_scorer_factory, monkeypatch):
    """A truncating fast tokenizer builds every pair's overflow cross product (ArguAna's 28,000 long
    pairs: the score stage was killed at 23 GB); the scorer truncates by rule instead
    (rerank_lab.pair_tokens), and nothing per pair outlives a call (a scored pair is in the cache)."""
    pairs = [(q * 40, p * 40) for q, p in SHARED + NEW]  # well past max_length
    scorer = minilm_scorer_factory()
    tokenizer = scorer._load().tokenizer
    calls = []
    real = type(tokenizer).__call__
    monkeypatch.setattr(type(tokenizer), "__call__", lambda self, *a, **kw: calls.append(kw.get("truncation")) or real(self, *a, **kw))
    scores = scorer.score(pairs)
    assert calls and set(calls) == {False}
    monkeypatch.undo()
    # the scores are those of the tokenizer's own truncation, fed to the same model
    features = tokenizer(
        [q for q, _ in pairs],
        [p for _, p in pairs],
        truncation="longest_first",
        max_length=scorer.max_length,
        padding=True,
        return_tensors="pt",
    )
    import torch

    with torch.inference_mode():
        logits = scorer._load().model(**features).logits
    np.testing.assert_allclose(scores, logits[:, 0].numpy(), atol=1e-5)
    keys = {pair_key(q, p) for q, p in pairs}
    per_pair_state = [name for name, v in vars(scorer).items() if isinstance(v, dict) and keys & set(v)]
    assert per_pair_state == [], per_pair_state


def test_scores_are_in_input_order(minilm_scorer_factory):
    forward = minilm_scorer_factory().score(SHARED)
    backward = minilm_scorer_factory().score(SHARED[::-1])
    np.testing.assert_allclose(backward[::-1], forward, atol=1e-5)
    assert forward.shape == (6,) and forward.dtype == np.float64


def test_unknown_dtype():
    with pytest.raises(ConfigError, match=r"unknown dtype 'int8' \(fix: use auto, float32, bfloat16 or float16\)"):
        PairScorer(MINILM, dtype="int8")


def test_model_path_that_does_not_exist(tmp_path):
    missing = tmp_path / "models" / "never-trained"
    with pytest.raises(ConfigError, match=r"model path '.*never-trained' does not exist"):
        PairScorer(str(missing))


def test_folder_without_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    scorer = PairScorer(str(tmp_path / "empty"), device="cpu")
    with pytest.raises(ConfigError, match=r"cannot load cross-encoder '.*empty'"):
        scorer.score([SHARED[0]])


def test_empty_input_runs_nothing(minilm_scorer_factory):
    scorer = minilm_scorer_factory()
    assert scorer.score([]).tolist() == []
    assert scorer.forward_calls == 0


# --- the cache shared by processes (dvc queue start -j N) ---------------------------------------


def test_a_stored_score_is_kept_and_put_returns_what_is_stored(tmp_path):
    """First writer wins: a pair two processes scored at once keeps one score, and both use it."""
    path = tmp_path / "scores.sqlite"
    cache = ScoreCache(path)
    assert cache.put("m", {"a": 1.0}) == {"a": 1.0}
    assert cache.put("m", {"a": 2.0, "b": 3.0}) == {"a": 1.0, "b": 3.0}  # "a" was stored by an earlier writer
    assert ScoreCache(path).get("m", ["a", "b", "c"]) == {"a": 1.0, "b": 3.0}


def _value(model: str, key: str) -> float:
    """The "score" a writer computes: a fixed function of (model, pair), as a model's score is."""
    return int.from_bytes(hashlib.sha1(f"{model}/{key}".encode()).digest()[:4], "big") / 2**32


# (model, first pair, last pair + 1) per writer: m1 overlaps on p01000..p01999, m2 is the second's alone
WRITES = {"a": [("m1", 0, 2000)], "b": [("m1", 1000, 3000), ("m2", 0, 500)]}


def _writer(path: str, name: str, chunk: int, barrier=None) -> None:
    """Like PairScorer.score, many times: read what is cached, store the rest, in transactions of ``chunk`` pairs."""
    cache = ScoreCache(path)
    if barrier is not None:
        barrier.wait(timeout=60)  # both processes start writing together
    for model, start, stop in WRITES[name]:
        for i in range(start, stop, chunk):
            keys = [f"p{j:05d}" for j in range(i, min(i + chunk, stop))]
            have = cache.get(model, keys)
            stored = cache.put(model, {k: _value(model, k) for k in keys if k not in have})
            assert all(stored[k] == _value(model, k) for k in stored)


def _rows(path: Path) -> list[tuple[str, str, float]]:
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return db.execute("SELECT model, pair, score FROM scores ORDER BY model, pair").fetchall()
    finally:
        db.close()


def test_two_processes_writing_one_cache_at_once_lose_nothing(tmp_path):
    """Two real processes (spawn) fill one cache file at the same time in ~300 small transactions
    each, overlapping on 1,000 pairs: every pair is there once with its score, as in a serial run."""
    shared, serial = tmp_path / "shared.sqlite", tmp_path / "serial.sqlite"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(shared), name, 7, barrier)) for name in WRITES]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]
    for name in WRITES:  # the same writes one after the other
        _writer(str(serial), name, 7)
    rows = _rows(shared)
    assert len(rows) == len({(m, p) for m, p, _ in rows}) == 3000 + 500  # m1: p00000..p02999, m2: p00000..p00499
    assert all(score == _value(model, pair) for model, pair, score in rows)
    assert rows == _rows(serial)
    # the mechanism: write-ahead logging, so readers never block the writer and vice versa
    assert sqlite3.connect(shared).execute("PRAGMA journal_mode").fetchone() == ("wal",)
