"""Cross-encoder losses by name: sentence-transformers' losses, wrapped, never rewritten.

=====================  ==========================================  ============================
name                   sentence-transformers class                 training examples (format)
=====================  ==========================================  ============================
``bce``                BinaryCrossEntropyLoss                      (query, text) -> 0/1
``ce``                 CrossEntropyLoss (2-class head)             (query, text) -> class 0/1
``ranknet``            RankNetLoss                                 (query, [texts]) -> [gains]
``listnet``            ListNetLoss                                 (query, [texts]) -> [gains]
``listmle``            ListMLELoss                                 (query, [texts]) -> [gains]
``plistmle``           PListMLELoss                                (query, [texts]) -> [gains]
``lambda``             LambdaLoss (``lambda_scheme`` selectable)   (query, [texts]) -> [gains]
``mnrl``               MultipleNegativesRankingLoss                (query, pos, neg_1..n)
``cmnrl``              CachedMultipleNegativesRankingLoss          (query, pos, neg_1..n)
``mse``                MSELoss                                     (query, text) -> teacher score
``margin_mse``         MarginMSELoss                               (query, pos, neg_1..n) -> teacher scores
=====================  ==========================================  ============================

The format decides how :mod:`rerank_lab.train` lays out the rows of the contract. ``[gains]``:
with ``train.gains: graded`` the qrels grades of the positives (e.g. NFCorpus 1-2) and 0 for
negatives, with ``binary`` the 0/1 labels; pointwise ``0/1`` stays binary either way (BCE and the
2-class head need 0/1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from rerank_lab.errors import ConfigError, unknown_name

FORMATS = ("pairs", "classes", "lists", "groups", "teacher-pairs", "teacher-groups")


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """How to build a loss and which example format it trains on."""

    cls_name: str
    format: str
    num_labels: int = 1
    options: Callable[[dict[str, Any]], dict[str, Any]] = lambda opts: {}


def _lambda_options(opts: dict[str, Any]) -> dict[str, Any]:
    from sentence_transformers.cross_encoder import losses

    schemes = {
        "none": losses.NoWeightingScheme,
        "ndcg1": losses.NDCGLoss1Scheme,
        "ndcg2": losses.NDCGLoss2Scheme,
        "lambdarank": losses.LambdaRankScheme,
        "ndcg2pp": losses.NDCGLoss2PPScheme,
    }
    name = opts.get("lambda_scheme", "ndcg2pp")
    if name not in schemes:
        raise unknown_name("LambdaLoss weighting scheme", name, list(schemes))
    return {"weighting_scheme": schemes[name]()}


def _negatives_options(opts: dict[str, Any]) -> dict[str, Any]:
    return {"num_negatives": opts["num_negatives"]}


LOSSES: dict[str, LossSpec] = {
    "bce": LossSpec("BinaryCrossEntropyLoss", "pairs"),
    "ce": LossSpec("CrossEntropyLoss", "classes", num_labels=2),
    "ranknet": LossSpec("RankNetLoss", "lists"),
    "listnet": LossSpec("ListNetLoss", "lists"),
    "listmle": LossSpec("ListMLELoss", "lists"),
    "plistmle": LossSpec("PListMLELoss", "lists"),
    "lambda": LossSpec("LambdaLoss", "lists", options=_lambda_options),
    "mnrl": LossSpec("MultipleNegativesRankingLoss", "groups", options=_negatives_options),
    "cmnrl": LossSpec("CachedMultipleNegativesRankingLoss", "groups", options=_negatives_options),
    "mse": LossSpec("MSELoss", "teacher-pairs"),
    "margin_mse": LossSpec("MarginMSELoss", "teacher-groups"),
}


def loss_spec(name: str) -> LossSpec:
    """The registry entry for ``name``; an unknown name lists the valid ones."""
    if name not in LOSSES:
        raise unknown_name("loss", name, list(LOSSES))
    return LOSSES[name]


def make_loss(name: str, model, options: dict[str, Any] | None = None):
    """Instantiate loss ``name`` for ``model`` with its options (``lambda_scheme``, ``num_negatives``)."""
    from sentence_transformers.cross_encoder import losses

    spec = loss_spec(name)
    try:
        return getattr(losses, spec.cls_name)(model, **spec.options(dict(options or {})))
    except KeyError as exc:
        raise ConfigError(f"loss {name!r} needs option {exc}", fix="set it in the train section") from None
