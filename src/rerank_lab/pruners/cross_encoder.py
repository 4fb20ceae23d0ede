"""A cross-encoder pruner: any cross-encoder scores (query, span); the label stage keeps a span
whose score reaches the threshold (a param, or fitted on the validation split)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from rerank_lab.config import params_model

TRAINED = "trained"  # the reranker this pipeline's train stage wrote (dvc.yaml passes it as --reranker)


@params_model("pruners.<name>")
class CrossEncoderPruner:
    """Scores by a cross-encoder: ``trained`` (this pipeline's reranker; in sentence mode, trained
    on sentences), a local folder under models/pretrained, the packaged MiniLM or a hub id."""

    model: str = Field(TRAINED, min_length=1)
    max_length: int = Field(128, ge=1)
    batch_tokens: int = Field(8192, ge=1)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    def scores(self, pairs: list[tuple[str, str]], records: list[str], cache: Any) -> list[float]:
        from rerank_lab.scoring import PairScorer

        scorer = PairScorer(self.model, self.max_length, self.batch_tokens, self.dtype, cache=cache)
        return [float(s) for s in scorer.score(pairs)] if pairs else []
