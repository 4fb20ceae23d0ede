"""A late-interaction (ColBERT-style) reranker: MaxSim over L2-normalised token embeddings, with the
document's tokens pooled at scoring time (:mod:`rerank_lab.late_interaction.pooling`).

The model: ``trained`` (the train-late stage's ``MultiVectorEncoder``, which dvc.yaml passes as
``--late-model``), any sentence-transformers ``MultiVectorEncoder`` folder or hub id (its projection,
masks and normalisation, queries encoded as queries and documents as documents), or any other
sentence-transformers model read for its raw token embeddings (zero-shot). Queries are cut to
``query_length`` tokens, documents to ``document_length``; the first ``protected`` document token
([CLS]) is never pooled. ``pool_factor`` 1 keeps every vector; a factor f leaves
max(floor(n'/f), 1) + protected vectors per document of n = n' + protected tokens. Every setting
that changes a score (pooling included) is part of the score cache's key.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Literal

import numpy as np
from pydantic import Field

from rerank_lab.config import params_model
from rerank_lab.models import best_device, resolve_model
from rerank_lab.score_cache import ScoreCache
from rerank_lab.scoring import CachedScorer, Pair
from rerank_lab.scoring_key import ScoringSpec, fingerprint, key_of

log = logging.getLogger(__name__)


@params_model("rerankers.<name>")
class LateInteractionReranker:
    """MaxSim of a query's token embeddings against a document's (pooled) token embeddings."""

    model: str = Field("all-MiniLM-L6-v2", min_length=1)  # trained: the train-late stage's model
    query_length: int = Field(32, ge=2)
    document_length: int = Field(300, ge=2)
    pool_factor: int = Field(1, ge=1)
    pool_method: Literal["hierarchical", "kmeans"] = "hierarchical"
    pool_seed: int = 0
    protected: int = Field(1, ge=0)
    batch_size: int = Field(32, ge=1)

    family = "late-interaction"
    trained_input = "late_model"  # the score stage's input that model: trained names

    def scorer(self, model: str, cache) -> MaxSimScorer:
        return MaxSimScorer(self, model, cache)


class MaxSimScorer(CachedScorer):
    """Scores pairs by MaxSim; each distinct query and document is embedded (and pooled) once per call."""

    def __init__(self, settings: LateInteractionReranker, model: str, cache: ScoreCache | None = None, device: str = "auto") -> None:
        self.settings, self.name = settings, model
        self.device = best_device() if device == "auto" else device
        self.cache = cache or ScoreCache(None)
        s = settings
        pooling = f"{s.pool_method} x{s.pool_factor}, seed {s.pool_seed}, {s.protected} protected" if s.pool_factor > 1 else None
        spec = ScoringSpec(family=s.family, query_length=s.query_length, pooling=pooling)
        self.identity = fingerprint(model, s.document_length, "float32", self.device, spec)
        self.key = key_of(self.identity)
        # documents' token vectors depend on neither pooling nor queries: every pool setting reuses them
        plain = fingerprint(model, s.document_length, "float32", self.device, ScoringSpec(family=s.family))
        self.vectors_key = key_of({**plain, "stored": "document token vectors"})
        self.vectors_reused = 0
        self.pairs_scored = self.forward_calls = 0
        self._model = None

    def _load(self):
        if self._model is None:
            if is_multi_vector(self.name):
                from sentence_transformers import MultiVectorEncoder

                self._model = MultiVectorEncoder(resolve_model(self.name), device=self.device)
                self._model[0].query_length, self._model[0].document_length = self.settings.query_length, self.settings.document_length
            else:
                from rerank_lab.models import load_sentence_transformer

                self._model = load_sentence_transformer(self.name)
        return self._model

    def _embed(self, texts: list[str], task: Literal["query", "document"]) -> list[np.ndarray]:
        """Each text's token embeddings (special tokens included, no padding), float32 as the model gives them."""
        model, size = self._load(), self.settings.batch_size
        if model.model_type == "MultiVectorEncoder":
            encode = model.encode_query if task == "query" else model.encode_document
            out = encode(texts, batch_size=size, device=self.device)
        else:
            model.max_seq_length = self.settings.query_length if task == "query" else self.settings.document_length
            out = model.encode(texts, output_value="token_embeddings", batch_size=size, device=self.device)
        self.forward_calls += -(-len(texts) // size)
        return [t.float().cpu().numpy() for t in out]

    def _document_tokens(self, documents: list[str]) -> list[np.ndarray]:
        """:meth:`_embed` of documents through the cache's ``vectors`` table: a document embedded by any
        earlier run of this model and document length (any pool setting) is read, not embedded."""
        keys = [hashlib.sha1(d.encode()).hexdigest() for d in documents]
        found = self.cache.get_vectors(self.vectors_key, list(dict.fromkeys(keys)))
        self.vectors_reused += len(found)
        missing = {k: d for k, d in zip(keys, documents) if k not in found}
        if missing:
            found.update(self.cache.put_vectors(self.vectors_key, dict(zip(missing, self._embed(list(missing.values()), "document")))))
        return [found[k] for k in keys]

    def document_vectors(self, documents: list[str]) -> list[np.ndarray]:
        """Each document's vectors as the index would hold them: token embeddings, normalised, pooled."""
        from rerank_lab.late_interaction import pool

        s = self.settings
        return [pool(unit(v), s.pool_factor, s.pool_method, s.pool_seed, s.protected) for v in self._document_tokens(documents)]

    def _compute(self, pairs: list[Pair]) -> np.ndarray:
        from rerank_lab.late_interaction import maxsim_pair

        queries = list(dict.fromkeys(q for q, _ in pairs))
        documents = list(dict.fromkeys(d for _, d in pairs))
        q_vec = dict(zip(queries, map(unit, self._embed(queries, "query"))))
        d_vec = dict(zip(documents, self.document_vectors(documents)))
        return np.array([maxsim_pair(q_vec[q], d_vec[d]) for q, d in pairs], dtype=np.float64)

    def index_stats(self, documents: list[str]) -> dict[str, float]:
        """Vectors per document and the index size they make (fp16 vectors), from token counts alone
        (the rule of :func:`rerank_lab.late_interaction.pooled_count`): the same whatever the cache held."""
        from rerank_lab.late_interaction import pooled_count

        s = self.settings
        tokenizer = self._load().tokenizer
        counts = [min(len(ids), s.document_length) for ids in tokenizer(documents, truncation=False)["input_ids"]]
        vectors = [pooled_count(n, s.pool_factor, s.protected) for n in counts]
        dim = self._load().get_embedding_dimension() or 0
        return {
            "documents": len(documents),
            "vectors_per_document": round(float(np.mean(vectors)), 4) if vectors else 0.0,
            "mb_fp16": round(sum(vectors) * dim * 2 / 2**20, 4),
        }


def unit(rows: np.ndarray) -> np.ndarray:
    """Token vectors L2-normalised, in float64."""
    rows = rows.astype(np.float64)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def is_multi_vector(name: str) -> bool:
    """Whether the model ``name`` (a folder, the packaged MiniLM, or a hub id in the local hub cache)
    is a sentence-transformers ``MultiVectorEncoder``."""
    import json
    from pathlib import Path

    path = Path(resolve_model(name))
    if path.is_dir():
        config = path / "config_sentence_transformers.json"
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config_sentence_transformers.json")
        config = Path(cached) if isinstance(cached, str) else path / "absent"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == "MultiVectorEncoder"
