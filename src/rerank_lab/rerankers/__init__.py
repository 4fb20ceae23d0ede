"""Rerankers by params: ``rerankers.<name>: {type: <family>, ...}``; ``score.reranker`` picks one
(a grid axis like any other param).

Families (``type``):

* ``cross-encoder`` -- a sequence classifier with a 1- or 2-logit head: this pipeline's trained
  model (``model: trained``), a folder under models/pretrained, or a hub id (bge-reranker-v2-m3,
  the ms-marco cross-encoders, jina-reranker-v2);
* ``causal-lm`` -- a causal LM read by the logits of "yes" and "no" after an instruction
  (``prompt``) and the model's chat template (or ``chat_template`` from params): Qwen3-Reranker,
  mxbai-rerank-v2;
* ``bi-encoder`` -- the cosine of a sentence embedding model's query and passage embeddings (the
  cheapest R0 baseline);
* ``listwise-llm`` -- a served LLM (any OpenAI-compatible endpoint) ordering each query's head in
  sliding windows (RankGPT; FIRST's first-token log-probabilities where the server returns them);
* ``late-interaction`` -- MaxSim over token embeddings, the document's tokens pooled at scoring
  time (``pool_factor``, ``pool_method``: hierarchical or kmeans).

Every pairwise family scores through the shared engine (:mod:`rerank_lab.scoring`): the score
cache, each distinct pair once, scores back in input order.
"""

from __future__ import annotations

from typing import Any

from rerank_lab.registry import make
from rerank_lab.rerankers.bi_encoder import BiEncoderReranker
from rerank_lab.rerankers.late_interaction import LateInteractionReranker
from rerank_lab.rerankers.listwise import ListwiseLLMReranker
from rerank_lab.rerankers.pairwise import TRAINED, CausalLMReranker, CrossEncoderReranker

RERANKERS: dict[str, type] = {
    "cross-encoder": CrossEncoderReranker,
    "causal-lm": CausalLMReranker,
    "bi-encoder": BiEncoderReranker,
    "listwise-llm": ListwiseLLMReranker,
    "late-interaction": LateInteractionReranker,
}

__all__ = ["RERANKERS", "TRAINED", "make_reranker"]


def make_reranker(name: str, settings: dict[str, Any] | None):
    """The ``rerankers.<name>`` entry, validated by its family's typed fields."""
    return make(RERANKERS, "reranker", name, settings)
