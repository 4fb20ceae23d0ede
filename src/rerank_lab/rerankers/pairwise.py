"""The pair-scoring families: a cross-encoder's classification head and a causal LM's yes/no
logits, both run by the engine (:class:`rerank_lab.scoring.PairScorer`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rerank_lab.config import params_model

TRAINED = "trained"  # the reranker this pipeline's train stage wrote (dvc.yaml passes it as --model)
Dtype = Literal["auto", "float32", "bfloat16", "float16"]


@params_model("rerankers.<name>")
class CrossEncoderReranker:
    """A sequence classifier (1 logit, or 2 classes: the log-odds of "relevant"): ``trained``, a
    folder under models/pretrained, the packaged MiniLM or a hub id. ``cast``: run the weights in
    ``dtype`` (bf16 on a CPU with AMX: the fast CPU option; its ranking change is in the README)."""

    model: str = Field(TRAINED, min_length=1)
    max_length: int = Field(256, ge=1)
    batch_tokens: int = Field(8192, ge=1)
    dtype: Dtype = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    cast: bool = False
    revision: str | None = None  # a hub id's branch, tag, refs/pr/N or commit (default: main)
    trust_remote_code: bool = False  # a hub model with its own modelling code (jina-reranker-v2)

    family = "cross-encoder"

    def scorer(self, model: str, cache):
        return _pair_scorer(self, model, cache)


@params_model("rerankers.<name>")
class CausalLMReranker:
    """A causal LM scored by ``logit[yes] - logit[no]`` at the last token (sentence-transformers'
    LogitScore). ``prompt``: the instruction (a system message under a chat template, else put
    before the query; null: none); ``chat_template``: a Jinja template replacing the model's own
    (it sees the roles ``system``, ``query`` and ``document``). Several prompts or templates are
    several entries, or one entry's key swept as a grid axis."""

    model: str = Field(..., min_length=1)
    prompt: str | None = None
    chat_template: str | None = None
    max_length: int = Field(512, ge=1)
    batch_tokens: int = Field(16384, ge=1)
    dtype: Dtype = "auto"
    cast: bool = False
    revision: str | None = None
    trust_remote_code: bool = False

    family = "causal-lm"

    def scorer(self, model: str, cache):
        return _pair_scorer(self, model, cache)


def _pair_scorer(entry: CrossEncoderReranker | CausalLMReranker, model: str, cache):
    """The engine for a pair-scoring entry: its fields that decide a score become the key's spec."""
    from rerank_lab.scoring import PairScorer
    from rerank_lab.scoring_key import ScoringSpec

    settings = {f: getattr(entry, f) for f in ("prompt", "chat_template", "cast", "revision", "trust_remote_code") if hasattr(entry, f)}
    spec = ScoringSpec(family=entry.family, **settings)
    return PairScorer(model, entry.max_length, entry.batch_tokens, entry.dtype, cache=cache, spec=spec)
