"""A bi-encoder as a reranker: the cosine of the query's and the passage's embeddings."""

from __future__ import annotations

import logging

import numpy as np
from pydantic import Field

from rerank_lab.config import params_model
from rerank_lab.models import best_device
from rerank_lab.score_cache import ScoreCache
from rerank_lab.scoring import CachedScorer, Pair
from rerank_lab.scoring_key import ScoringSpec, fingerprint, key_of

log = logging.getLogger(__name__)


@params_model("rerankers.<name>")
class BiEncoderReranker:
    """A sentence embedding model (the packaged MiniLM, a folder under models/pretrained, a hub id)."""

    model: str = Field("all-MiniLM-L6-v2", min_length=1)
    max_length: int = Field(256, ge=1)
    batch_size: int = Field(64, ge=1)

    family = "bi-encoder"

    def scorer(self, model: str, cache) -> BiEncoderScorer:
        return BiEncoderScorer(model, self.max_length, self.batch_size, cache)


class BiEncoderScorer(CachedScorer):
    """Cosine similarity of normalised embeddings; each distinct text is embedded once per call."""

    def __init__(self, model: str, max_length: int = 256, batch_size: int = 64, cache: ScoreCache | None = None, device: str = "auto"):
        self.name, self.max_length, self.batch_size = model, max_length, batch_size
        self.device = best_device() if device == "auto" else device
        self.cache = cache or ScoreCache(None)
        self.identity = fingerprint(model, max_length, "float32", self.device, ScoringSpec(family="bi-encoder"))
        self.key = key_of(self.identity)
        self.pairs_scored = self.forward_calls = 0

    def _compute(self, pairs: list[Pair]) -> np.ndarray:
        from rerank_lab.models import load_sentence_transformer

        model = load_sentence_transformer(self.name, self.max_length)
        texts = list(dict.fromkeys(t for pair in pairs for t in pair))
        emb = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, device=self.device)
        self.forward_calls += -(-len(texts) // self.batch_size)
        row = {t: i for i, t in enumerate(texts)}
        q = emb[[row[q] for q, _ in pairs]].astype(np.float64)
        p = emb[[row[p] for _, p in pairs]].astype(np.float64)
        return np.einsum("ij,ij->i", q, p)
