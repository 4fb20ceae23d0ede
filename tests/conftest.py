"""Shared fixtures: the packaged all-MiniLM-L6-v2 as a cross-encoder, loaded once per session."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.s3_team"]  # the `s3` fixture: a moto S3 server on loopback per test

MINILM = "all-MiniLM-L6-v2"


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """A per-user cache for the whole session, set before any module-scoped fixture runs (the pipeline
    fixture's `dvc repro` subprocesses): no test ever writes the real ~/.cache/rerank-lab."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RERANK_LAB_CACHE", str(tmp_path_factory.mktemp("rerank-lab-session-cache")))
        yield


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own per-user cache (scores, checkpoints): never the real ~/.cache/rerank-lab,
    and no test sees another's scores (subprocesses inherit it through the environment)."""
    monkeypatch.setenv("RERANK_LAB_CACHE", str(tmp_path_factory.mktemp("rerank-lab-cache")))


MINILM_MAX_LENGTH = 64


@pytest.fixture(scope="session")
def minilm_cross_encoder():
    """The real sentence-transformers CrossEncoder that PairScorer loads (fresh head, fixed seed)."""
    from rerank_lab.scoring import PairScorer

    return PairScorer(MINILM, MINILM_MAX_LENGTH, device="cpu")._load()


@pytest.fixture(scope="session")
def minilm_scorer_factory(minilm_cross_encoder):
    """``make(cache=None, batch_tokens=8192)``: a new PairScorer ("experiment") on the loaded model.

    Each call is a separate scorer with its own counters and tokenization memo; only the loaded
    weights are shared, so the tests pay for one model load.
    """
    from rerank_lab.scoring import PairScorer

    def make(cache=None, batch_tokens: int = 8192):
        scorer = PairScorer(MINILM, MINILM_MAX_LENGTH, batch_tokens, device="cpu", cache=cache)
        scorer._model = minilm_cross_encoder
        return scorer

    return make


TRAIN_SEED = 42
TRAIN_MAX_LENGTH = 32


@pytest.fixture(scope="session")
def seeded_base_cross_encoder():
    """The model rerank_lab.train starts from: all-MiniLM-L6-v2 with a 1-logit head drawn after
    ``transformers.set_seed(42)`` (TrainConfig's default seed), max_length 32, on the CPU.

    Loaded once; tests that switch it to train mode switch it back to eval mode.
    """
    import transformers
    from sentence_transformers import CrossEncoder

    from rerank_lab.models import resolve_model

    transformers.set_seed(TRAIN_SEED)
    model = CrossEncoder(resolve_model(MINILM), num_labels=1, max_length=TRAIN_MAX_LENGTH, device="cpu")
    model.eval()
    return model
