"""The late-interaction family: MaxSim over the packaged MiniLM's token embeddings with the document's
tokens pooled, against an independent computation; pooling settings are part of the key."""

from __future__ import annotations

import numpy as np
import pytest

from rerank_lab.late_interaction import pool, pooled_count
from rerank_lab.rerankers import make_reranker
from rerank_lab.score_cache import ScoreCache
from tests.tiny_models import MINILM

PAIRS = [
    ("what causes cancer", "Smoking causes lung cancer in many patients, and the risk grows with every year of smoking."),
    ("what causes cancer", "The weather today is sunny and warm."),
    ("heart disease risk", "Exercise lowers the risk of heart disease; diet matters as much."),
    ("heart disease risk", "Smoking causes lung cancer in many patients, and the risk grows with every year of smoking."),
]
Q_LEN, D_LEN = 8, 24


def _entry(**settings):
    return make_reranker("li", {"type": "late-interaction", "model": MINILM, "query_length": Q_LEN, "document_length": D_LEN, **settings})


def _independent(factor: int, method: str) -> np.ndarray:
    """sentence-transformers' token embeddings, normalised, the documents pooled, then MaxSim by hand."""
    from sentence_transformers import SentenceTransformer

    from rerank_lab.models import resolve_model

    model = SentenceTransformer(resolve_model(MINILM), device="cpu")

    def tokens(text: str, length: int) -> np.ndarray:
        model.max_seq_length = length
        t = model.encode([text], output_value="token_embeddings")[0].numpy().astype(np.float64)
        return t / np.linalg.norm(t, axis=1, keepdims=True)

    out = []
    for q, d in PAIRS:
        qv, dv = tokens(q, Q_LEN), pool(tokens(d, D_LEN), factor, method, seed=0, protected=1)
        out.append(float((qv @ dv.T).max(axis=1).sum()))
    return np.array(out)


@pytest.mark.parametrize(("factor", "method"), [(1, "hierarchical"), (3, "hierarchical"), (2, "kmeans")])
def test_maxsim_scores_equal_an_independent_computation(factor, method):
    scorer = _entry(pool_factor=factor, pool_method=method).scorer(MINILM, ScoreCache(None))
    got = scorer.score(PAIRS)
    np.testing.assert_allclose(got, _independent(factor, method), atol=1e-5)
    assert got[0] > got[1] and got[2] > got[3]  # the relevant passage first, for both queries
    assert scorer.pairs_scored == 4


def test_pooling_shrinks_the_index_as_documented():
    docs = sorted({d for _, d in PAIRS})
    full = _entry().scorer(MINILM, None)
    counts = [len(v) for v in full.document_vectors(docs)]
    assert counts == [min(n, D_LEN) for n in (len(ids) for ids in full._load().tokenizer(docs)["input_ids"])]
    for factor in (2, 3, 6):
        scorer = _entry(pool_factor=factor).scorer(MINILM, None)
        pooled = [len(v) for v in scorer.document_vectors(docs)]
        assert pooled == [pooled_count(n, factor) for n in counts]
        stats = scorer.index_stats(docs)
        assert stats["vectors_per_document"] == round(float(np.mean(pooled)), 4) and stats["documents"] == 3
        assert stats["mb_fp16"] == pytest.approx(sum(pooled) * 384 * 2 / 2**20, abs=1e-4)
    assert full.index_stats(docs)["vectors_per_document"] == round(float(np.mean(counts)), 4)


def test_the_key_covers_the_pooling_and_the_lengths():
    keys = {
        _entry().scorer(MINILM, None).key,
        _entry(pool_factor=2).scorer(MINILM, None).key,
        _entry(pool_factor=2, pool_method="kmeans").scorer(MINILM, None).key,
        _entry(pool_factor=2, pool_seed=1).scorer(MINILM, None).key,
        _entry(query_length=16).scorer(MINILM, None).key,
        _entry(document_length=32).scorer(MINILM, None).key,
    }
    assert len(keys) == 6
    assert _entry(pool_factor=1, pool_seed=5).scorer(MINILM, None).key == _entry().scorer(MINILM, None).key  # no pooling: no seed


def test_a_bad_pool_setting_names_its_key():
    from rerank_lab.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^rerankers\.li\.pool_method: unknown value, got 'ward'"):
        _entry(pool_method="ward")
    with pytest.raises(ConfigError, match=r"^rerankers\.li\.pool_factor: must be >= 1, got 0"):
        _entry(pool_factor=0)


def test_every_pool_setting_reuses_the_documents_token_vectors(tmp_path):
    cache = ScoreCache(tmp_path / "scores.sqlite")
    first = _entry(pool_factor=2, pool_method="kmeans").scorer(MINILM, cache)
    first.score(PAIRS)
    docs = len({d for _, d in PAIRS})
    assert first.vectors_reused == 0
    second = _entry(pool_factor=3, pool_method="hierarchical").scorer(MINILM, ScoreCache(tmp_path / "scores.sqlite"))
    assert second.key != first.key and second.vectors_key == first.vectors_key  # pooling keys the scores, not the vectors
    got = second.score(PAIRS)
    assert second.vectors_reused == docs and second.forward_calls == 1  # the queries' batch only
    np.testing.assert_allclose(got, _independent(3, "hierarchical"), atol=1e-5)
    other_length = make_reranker("li", {"type": "late-interaction", "model": MINILM, "query_length": Q_LEN, "document_length": D_LEN + 1})
    assert other_length.scorer(MINILM, None).vectors_key != first.vectors_key


def test_stored_vectors_come_back_bit_for_bit():
    cache = ScoreCache(None)
    rows = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    assert cache.put_vectors("m", {"a": rows})["a"].tobytes() == rows.tobytes()
    assert cache.put_vectors("m", {"a": rows + 1})["a"].tobytes() == rows.tobytes()  # the first writer wins
    assert cache.get_vectors("m", ["a", "b"])["a"].shape == (7, 5) and cache.get_vectors("other", ["a"]) == {}
