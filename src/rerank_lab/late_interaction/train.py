"""train-late: a late-interaction (ColBERT-style) reranker trained on the contract with
sentence-transformers' ``MultiVectorEncoder`` stack (6.3; PyLate cannot share this environment:
README "Late interaction").

The model: the base's token embeddings (``late_train.model``, default all-MiniLM-L6-v2) -> a linear
projection without bias to ``dim`` (64) -> padding and, for documents, nothing else masked -> L2
normalised; queries cut to ``query_length`` (32) tokens, documents to ``document_length`` (300). A
base that already is a multi-vector model is trained as it is.

Losses (``late_train.loss``), on the rows of the mined dataset laid out as groups (query, one
positive, ``list_size - 1`` of the row's negatives, seeded; :func:`rerank_lab.train_examples.build_examples`):

* ``contrastive`` -- ``MultiVectorMultipleNegativesRankingLoss``: cross-entropy over MaxSim scores
  of the positive against the group's negatives and the other groups' documents;
* ``distillation`` -- ``MultiVectorDistillKLDivLoss``: KL divergence between the softmaxed teacher
  scores of the group (``teacher_scores.<late_train.teacher>``, the teacher-score stage's column)
  and the softmaxed MaxSim scores (``temperature`` on both).

Training mode (``late_train.mode``): ``standard`` trains without pooling; ``pool-aware`` wraps the
loss in ``MultiVectorTokenPoolingLoss`` with one variant per pool factor of
``pool_factor_min..pool_factor_max`` (both included): each batch draws one factor uniformly (Python's ``random``, which the
trainer seeds with ``late_train.seed``) and its documents are pooled inside the forward by
:class:`~rerank_lab.late_interaction.token_pooling.ClusterTokenPooling` -- the score stage's own
clustering (``pool_method``), the assignment without gradient, gradients through the cluster means.
The metrics count the batches each factor got.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from rerank_lab.config import Number, invalid, params_model, parse, section
from rerank_lab.io.atomic import atomic_dir
from rerank_lab.models import best_device, drop_card_timings, resolve_model

log = logging.getLogger(__name__)

VOLATILE = ("train_seconds",)  # printed, kept out of the metrics file and the model folder


@params_model("late_train")
class LateTrainConfig:
    """The ``late_train`` section of params.yaml."""

    model: str = Field("all-MiniLM-L6-v2", min_length=1)
    dim: int = Field(64, ge=1)
    query_length: int = Field(32, ge=2)
    document_length: int = Field(300, ge=2)
    loss: Literal["contrastive", "distillation"] = "contrastive"
    teacher: str | None = None  # distillation: a teacher_scores.<name> column
    temperature: Number = Field(1.0, gt=0)  # distillation: softmax temperature of teacher and student scores
    mode: Literal["standard", "pool-aware"] = "standard"
    pool_factor_min: int = Field(1, ge=1)  # pool-aware: each batch's factor, uniform over min..max
    pool_factor_max: int = Field(6, ge=1)
    pool_method: Literal["kmeans", "hierarchical"] = "kmeans"
    pool_seed: int = 0  # k-means' seed inside the forward
    list_size: int = Field(8, ge=2)  # a positive and list_size - 1 of the row's negatives
    batch_size: int = Field(8, ge=1)
    learning_rate: Number = Field(3e-5, gt=0)
    warmup_ratio: Number = Field(0.1, ge=0, le=1)
    epochs: Number = Field(1.0, gt=0)
    max_queries: int | None = Field(None, ge=1)  # null: every training query
    max_positives_per_query: int | None = Field(None, ge=1)  # a group per positive, at most this many per query
    no_positive: Literal["error", "skip"] = "skip"  # rows without a positive (NOINFO claims): a group needs one
    max_drop_fraction: Number = Field(0.5, ge=0, le=1)
    logging_steps: int = Field(10, ge=1)
    seed: int = 42

    gains = "binary"  # build_examples' labels (groups have none but the teacher's)

    def __post_init__(self) -> None:
        if self.pool_factor_max < self.pool_factor_min:
            fix = f"make it >= late_train.pool_factor_min ({self.pool_factor_min}), e.g. 6"
            raise invalid(
                self,
                "pool_factor_max",
                f"is below pool_factor_min: the range {self.pool_factor_min}..{self.pool_factor_max} is empty",
                fix=fix,
            )
        if self.loss == "distillation" and not self.teacher:
            fix = "run teacher-score and name its column, e.g. late_train.teacher: bm25"
            raise invalid(self, "teacher", "is needed by distillation: the name of a teacher_scores.<name> column", fix=fix)

    @property
    def format(self) -> str:
        return "teacher-groups" if self.loss == "distillation" else "groups"


def build_model(cfg: LateTrainConfig, device: str):
    """The base model with a fresh projection (seeded), or a multi-vector base as it is."""
    import torch
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    from rerank_lab.rerankers.late_interaction import is_multi_vector

    path = resolve_model(cfg.model)
    if is_multi_vector(path):
        model = MultiVectorEncoder(path, device=device)
        model[0].query_length, model[0].document_length = cfg.query_length, cfg.document_length
        return model
    torch.manual_seed(cfg.seed)
    transformer = Transformer(path, query_length=cfg.query_length, document_length=cfg.document_length)
    hidden = transformer.get_embedding_dimension()
    projection = Dense(hidden, cfg.dim, bias=False, activation_function=torch.nn.Identity(), module_input_name="token_embeddings")
    modules = [transformer, projection, MultiVectorMask(), Normalize(module_input_name="token_embeddings")]
    return MultiVectorEncoder(modules=modules, device=device)


def build_loss(cfg: LateTrainConfig, model):
    """The loss module, and the pooling variants of a pool-aware run (empty otherwise)."""
    from sentence_transformers.multi_vector_encoder.losses import (
        MultiVectorDistillKLDivLoss,
        MultiVectorMultipleNegativesRankingLoss,
        MultiVectorTokenPoolingLoss,
    )

    from rerank_lab.late_interaction.token_pooling import ClusterTokenPooling

    if cfg.loss == "distillation":
        loss = MultiVectorDistillKLDivLoss(model, temperature=float(cfg.temperature))
    else:
        loss = MultiVectorMultipleNegativesRankingLoss(model)
    if cfg.mode == "standard":
        return loss, []
    factors = range(cfg.pool_factor_min, cfg.pool_factor_max + 1)
    poolings = [ClusterTokenPooling(f, cfg.pool_method, cfg.pool_seed) for f in factors]
    return MultiVectorTokenPoolingLoss(model, loss, poolings, n_poolings_per_step=1), poolings


def train(cfg: LateTrainConfig, train_rows, out: Path, dataset_path: str = "dataset") -> tuple[dict[str, Any], list[dict]]:
    """Train on the ``train`` split's rows and save the model into ``out``; returns the metrics and the log history."""
    from sentence_transformers import MultiVectorEncoderTrainer, MultiVectorEncoderTrainingArguments

    from rerank_lab.train_examples import build_examples

    started = time.time()
    examples = build_examples(train_rows, cfg.format, cfg, path=f"{dataset_path} (train split)", section="late_train")
    device = best_device()
    model = build_model(cfg, device)
    loss, poolings = build_loss(cfg, model)
    with tempfile.TemporaryDirectory(prefix="train-late-") as scratch:  # nothing is saved there (save_strategy "no")
        args = MultiVectorEncoderTrainingArguments(
            output_dir=scratch,
            num_train_epochs=float(cfg.epochs),
            per_device_train_batch_size=cfg.batch_size,
            learning_rate=float(cfg.learning_rate),
            warmup_steps=int(cfg.warmup_ratio * math.ceil(len(examples) / cfg.batch_size) * cfg.epochs),
            seed=cfg.seed,
            data_seed=cfg.seed,
            bf16=device.startswith("cuda"),
            use_cpu=device == "cpu",
            logging_steps=cfg.logging_steps,
            save_strategy="no",
            report_to="none",
            dataloader_num_workers=0,
        )
        trainer = MultiVectorEncoderTrainer(model=model, args=args, train_dataset=examples, loss=loss)
        trainer.train()
    history = list(trainer.state.log_history)
    losses = [h["loss"] for h in history if "loss" in h]
    metrics: dict[str, Any] = {
        "train_examples": len(examples),
        "steps": trainer.state.global_step,
        "last_logged_loss": round(float(losses[-1]), 6) if losses else None,
        "dim": model.get_embedding_dimension(),
    }
    if poolings:  # batches per pool factor: a batch's documents (all its columns) go through one merged forward
        metrics["pool_factor_batches"] = {str(p.pool_factor): p.calls for p in poolings}
    with atomic_dir(out) as tmp:
        model.save(str(tmp))
        drop_card_timings(tmp / "README.md")
        record = {"config": dataclasses.asdict(cfg), "metrics": metrics}
        (tmp / "rerank_lab_train.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    metrics["train_seconds"] = round(time.time() - started, 1)
    return metrics, history


# --- the stage contract (rerank_lab.stage) ------------------------------------------------------


def configure(params: dict[str, Any]) -> LateTrainConfig:
    return parse(LateTrainConfig, section(params, "late_train"), "late_train")


def run(cfg: LateTrainConfig, inputs: dict[str, Any], outputs: dict[str, Path]) -> dict[str, Any]:
    """Train on ``--dataset``'s train split into ``--output``."""
    from rerank_lab.errors import InputError
    from rerank_lab.io.datasets import load_dataset
    from rerank_lab.models import require_declared

    require_declared(cfg.model, inputs["models"], "late_train.model")
    dd = load_dataset(inputs["dataset"])
    if "train" not in dd:
        raise InputError("no train split", path=str(inputs["dataset"]), fix="convert a train split")
    metrics, _ = train(cfg, dd["train"], outputs["output"], str(inputs["dataset"]))
    return metrics


def describe(cfg: LateTrainConfig, metrics: dict[str, Any]) -> str:
    return "train-late: " + ", ".join(f"{k} {metrics[k]}" for k in VOLATILE if k in metrics)
