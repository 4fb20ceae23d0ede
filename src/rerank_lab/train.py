"""train: a sentence-transformers CrossEncoder trained by ``CrossEncoderTrainer`` on the contract.

Regimes (``train.regime``) and the losses each accepts (``train.loss``, default first):

================  ======  ==============================================================
regime            plan    losses
================  ======  ==============================================================
off-the-shelf     R0      none: the base model is saved unchanged and scored as it is
binary            R1      bce, ce
pairwise          R2      ranknet
listwise          R3      listnet, listmle, plistmle, lambda, ranknet, mnrl, cmnrl
curriculum        R4      ``warmup_loss`` (bce) for ``curriculum_fraction`` of the first
                          epoch's steps, then a listwise loss (listnet, ...)
distillation      R5      margin_mse, mse, on the ``teacher_scores.<teacher>`` column
================  ======  ==============================================================

Examples are built from the rows of the (mined) dataset: a list is one positive and
``list_size - 1`` of the row's negatives (seeded choice), one list per positive.

Labels each example format trains on (``train.gains``; the dataset's ``labels`` stay 0/1):

==================  ==========================================  =================================
format              losses                                      labels
==================  ==========================================  =================================
lists               ranknet, listnet, listmle, plistmle,        ``gains: graded``: the qrels grade
                    lambda, the curriculum's listwise part      of each positive (NFCorpus 1-2),
                                                                0 for negatives; ``binary``: 0/1
pairs, classes      bce, ce, the curriculum's bce warm-up       0/1 always (BCE needs 0/1)
groups              mnrl, cmnrl                                 none: the positive is its slot
teacher-*           mse, margin_mse                             the teacher's scores
==================  ==========================================  =================================

A text's grade (:func:`text_gains`) is its qrels grade (``--qrels`` folder, ``train.tsv``) when
that is > 0 and the text is labelled 1, else its label. With graded gains a positive's list also
holds up to ``(list_size - 1) // 2`` of the row's positives graded *lower* (seeded choice) before
its negatives, so lambda, ranknet, listmle and listnet see the grade order itself, not only
"relevant above the rest"; with all grades equal (SciFact) the lists are the binary ones.

Rows without a positive are an error for list and group losses, or, with ``no_positive: skip``,
left out -- up to ``max_drop_fraction`` of the split (:func:`rerank_lab.drops.check_drop`).

The training-time dev metrics (``dev_mined_ndcg@10``, ``dev_mined_mrr@10``, ``dev_mined_map`` in
the metrics JSON and ``plots/dev.tsv``) rerank each validation row's own texts -- its positives
plus the negatives mine chose for it, positives always included -- not the first-stage pool;
they track training, and are not comparable to the evaluate stage's numbers.

CPU trains in fp32, CUDA in bf16. Checkpoints go to a folder that survives an interrupted run;
a rerun with the same settings resumes from the last one, other settings start afresh (where the
folder is, and how two runs of one training share it: :mod:`rerank_lab.checkpoints`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Literal, get_args

import datasets
from pydantic import Field

from rerank_lab.checkpoints import _last_checkpoint, _train_qrels, checkpoint_folder, resume_fingerprint
from rerank_lab.config import Number, choice_error, invalid, params_model, parse, section
from rerank_lab.errors import ConfigError, InputError
from rerank_lab.hpo_trial import TrialLink
from rerank_lab.io.atomic import atomic_dir
from rerank_lab.io.qrels import Qrels
from rerank_lab.losses import LOSSES, loss_spec, make_loss
from rerank_lab.losses.curriculum import CurriculumLoss
from rerank_lab.models import best_device, drop_card_timings, resolve_model
from rerank_lab.train_examples import build_examples, dev_samples

log = logging.getLogger(__name__)

REGIMES: dict[str, tuple[str, ...]] = {
    "off-the-shelf": (),
    "binary": ("bce", "ce"),
    "pairwise": ("ranknet",),
    "listwise": ("listnet", "listmle", "plistmle", "lambda", "ranknet", "mnrl", "cmnrl"),
    "curriculum": ("listnet", "listmle", "plistmle", "lambda", "ranknet"),
    "distillation": ("margin_mse", "mse"),
}
Gains = Literal["graded", "binary"]
GAINS = get_args(Gains)
LambdaScheme = Literal["none", "ndcg1", "ndcg2", "lambdarank", "ndcg2pp"]  # LambdaLoss's weighting schemes (rerank_lab.losses)
# what a run reports that depends on the machine and the run's history, not on its inputs: logged,
# kept out of the model folder and the DVC metrics file, so equal inputs give equal outputs
VOLATILE = ("train_seconds", "resumed")
DEV_NAME = "dev_mined"  # the training-time dev metrics: positives + mined negatives, not the first-stage pool


@params_model("train")
class TrainConfig:
    """The ``train`` section of params.yaml."""

    model: str = Field("all-MiniLM-L6-v2", min_length=1)
    # the converted dataset trained on (a `datasets` entry, checked by rerank-lab check): dvc.yaml keys
    # the model by it, models/<dataset>/reranker, and every evaluated dataset is scored with that model
    dataset: str | None = Field(None, min_length=1)
    regime: str = "listwise"  # a REGIMES key (checked below)
    loss: str | None = None  # null: the regime's first loss
    warmup_loss: str = "bce"
    curriculum_fraction: Number = 0.3  # in (0, 1); checked for the curriculum regime only
    teacher: str | None = None
    lambda_scheme: LambdaScheme = "ndcg2pp"
    learning_rate: Number = Field(7e-5, gt=0)
    warmup_ratio: Number = Field(0.1, ge=0, le=1)
    epochs: Number = Field(1.0, gt=0)
    batch_size: int = Field(8, ge=1)
    list_size: int = Field(8, ge=2)  # a positive and at least one negative
    max_length: int = Field(256, ge=1)
    max_queries: int | None = Field(None, ge=1)  # null: every training query
    # a query gives one list / group (pointwise: one set of pairs) per judged positive; at most this
    # many, the highest-graded first, so max_queries x this bounds the training set. null: all
    max_positives_per_query: int | None = Field(None, ge=1)
    max_dev_queries: int = Field(100, ge=1)
    no_positive: Literal["error", "skip"] = "error"  # rows without a positive (NOINFO claims) for a loss that needs one
    max_drop_fraction: Number = Field(0.5, ge=0, le=1)  # no_positive: skip stops when it would leave out more of the train split
    gains: Gains = "graded"  # list-format labels: graded (qrels grades) | binary (the 0/1 labels)
    logging_steps: int = Field(10, ge=1)
    eval_steps: int | None = Field(None, ge=1)  # dev evaluations every this many steps; null: each half epoch
    save_steps: int = Field(100, ge=1)
    seed: int = 42
    processes: int = Field(1, ge=1)  # DDP workers (GPUs, or CPU processes with gloo) sharing each step: rerank_lab.train_ddp
    trial: str | None = None  # a tier-B trial, "<study>/<number>": set by rerank-lab hpo (rerank_lab.hpo_trial)

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise choice_error(("regime",), self.regime, list(REGIMES), what="regime")
        loss = self.loss_name
        if self.regime != "off-the-shelf":
            if loss not in LOSSES:
                raise choice_error(("loss",), loss, sorted(LOSSES), what="loss")
            if loss not in REGIMES[self.regime]:
                raise invalid(self, "loss", f"does not fit regime {self.regime!r}", fix=f"use one of: {', '.join(REGIMES[self.regime])}")
        if self.regime == "curriculum":
            if self.warmup_loss not in LOSSES:
                raise choice_error(("warmup_loss",), self.warmup_loss, sorted(LOSSES), what="loss")
            if loss_spec(self.warmup_loss).format != "pairs":
                raise invalid(self, "warmup_loss", "is not pointwise", fix="use bce")
            if not 0.0 < self.curriculum_fraction < 1.0:
                raise invalid(self, "curriculum_fraction", "must be in (0, 1)", fix="e.g. 0.3")
        if self.batch_size % self.processes:
            fix = f"e.g. {self.processes * max(1, round(self.batch_size / self.processes))}: each process takes an equal share of a step"
            raise invalid(self, "batch_size", f"must be a multiple of train.processes ({self.processes})", fix=fix)
        if self.regime == "distillation" and not self.teacher:
            fix = "run teacher-score and name its column"
            raise invalid(self, "teacher", "is needed by distillation: the name of a teacher_scores.<name> column", fix=fix)

    @property
    def loss_name(self) -> str:
        return self.loss or (REGIMES[self.regime][0] if REGIMES[self.regime] else "")

    @property
    def uses_grades(self) -> bool:
        """Whether the loss trains on list labels, which take the qrels grades with ``gains: graded``."""
        return self.regime != "off-the-shelf" and self.gains == "graded" and loss_spec(self.loss_name).format == "lists"

    def fingerprint(self) -> str:
        return hashlib.sha1(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]


# --- training ---------------------------------------------------------------------------------


def _dev_evaluator(samples: list[dict]):
    """The ``dev_mined`` evaluator: each row's positives + mined negatives, positives always reranked.

    A 2-class head (``ce``) predicts two columns; it ranks by class 1 minus class 0, as scoring does.
    """
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    class DevEvaluator(CrossEncoderRerankingEvaluator):
        def compute_metrics(self, y_true, y_pred, num_positives=None):
            if getattr(y_pred, "ndim", 1) == 2:  # (texts, 2)
                y_pred = y_pred[:, 1] - y_pred[:, 0]
            return super().compute_metrics(y_true, y_pred, num_positives)

    return DevEvaluator(samples, at_k=10, name=DEV_NAME, always_rerank_positives=True)


@dataclasses.dataclass(frozen=True)
class TrainSetup:
    """What the stage runs: the ``train`` section and, for a tier-B trial, where it reports."""

    config: TrainConfig
    trial: TrialLink | None = None


def train(
    cfg: TrainConfig,
    dd: datasets.DatasetDict,
    out: Path,
    checkpoints: Path | None = None,
    dataset_path: str = "dataset",
    qrels: dict[str, Qrels] | None = None,
    trial: TrialLink | None = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Train (or, for R0, just load) a cross-encoder and save it to ``out``; returns metrics and the log.

    ``checkpoints``: the folder to resume from (see :func:`checkpoint_folder`; ``None``: the
    per-user cache's). ``qrels`` maps split -> graded judgments; ``gains: graded`` with a
    list-format loss needs ``train``. ``trial``: report the dev curve to a tier-B study and stop
    when it prunes the trial (:mod:`rerank_lab.hpo_trial`).
    """
    fingerprint = resume_fingerprint(cfg, dd, qrels)
    distributed = cfg.processes > 1 and fingerprint is not None  # R0 trains nothing: one process
    if distributed:
        from rerank_lab.train_ddp import check_processes

        check_processes(cfg.processes, best_device())
    with checkpoint_folder(checkpoints, fingerprint) as folder:
        job = dict(
            cfg=cfg, dd=dd, out=out, checkpoints=folder, fingerprint=fingerprint, dataset_path=dataset_path, qrels=qrels, trial=trial
        )
        if not distributed:
            return _train(**job)
        from rerank_lab.train_ddp import launch

        _last_checkpoint(folder, fingerprint)  # stamps a fresh folder once, before any worker looks into it
        return launch(cfg.processes, job)


def _train(
    cfg: TrainConfig,
    dd: datasets.DatasetDict,
    out: Path,
    checkpoints: Path | None,
    fingerprint: str | None,
    dataset_path: str,
    qrels: dict[str, Qrels] | None,
    trial: TrialLink | None = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    import transformers
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments

    from rerank_lab.train_ddp import evaluate_once, for_workers, local_device, rank, trainer_arguments

    transformers.set_seed(cfg.seed)  # the fresh classification head is drawn from this seed (on every rank alike)
    device = local_device(best_device())
    spec = loss_spec(cfg.loss_name) if cfg.regime != "off-the-shelf" else None
    train_qrels = _train_qrels(cfg, qrels)
    if cfg.uses_grades and train_qrels is None:
        raise ConfigError(
            f"train.gains is graded and loss {cfg.loss_name!r} trains on list labels, but no train qrels were given",
            fix="pass the convert stage's qrels folder (rerank-lab train --qrels data/convert/<dataset>/qrels), or set train.gains: binary",
        )
    try:
        model = CrossEncoder(resolve_model(cfg.model), num_labels=spec.num_labels if spec else 1, max_length=cfg.max_length, device=device)
    except (OSError, ValueError) as exc:  # ValueError: a folder that holds no model config
        raise ConfigError(f"cannot load base model {cfg.model!r}: {exc}", fix="a local folder, a hub id, or all-MiniLM-L6-v2") from None
    started = time.time()
    history: list[dict[str, Any]] = []
    metrics: dict[str, float] = {}
    if spec is not None:
        if "train" not in dd:
            raise InputError("the dataset has no train split", path=dataset_path, fix="convert a source with training queries")
        examples = build_examples(dd["train"], spec.format, cfg, path=f"{dataset_path} (train split)", qrels=train_qrels)
        steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
        total_steps = math.ceil(steps_per_epoch * cfg.epochs)
        loss = make_loss(cfg.loss_name, model, {"lambda_scheme": cfg.lambda_scheme, "num_negatives": cfg.list_size - 1})
        if cfg.regime == "curriculum":
            switch = max(1, int(cfg.curriculum_fraction * steps_per_epoch))
            loss = CurriculumLoss(model, make_loss(cfg.warmup_loss, model), loss, switch)
            metrics["curriculum_switch_step"] = switch
        train_rows = for_workers(examples, loss, cfg.batch_size)  # unchanged in one process
        samples = dev_samples(dd.get("validation"), cfg.max_dev_queries)
        evaluator = _dev_evaluator(samples) if samples else None
        args = CrossEncoderTrainingArguments(
            output_dir=str(checkpoints),
            num_train_epochs=cfg.epochs,
            learning_rate=cfg.learning_rate,
            warmup_steps=int(cfg.warmup_ratio * total_steps),
            lr_scheduler_type="linear",
            seed=cfg.seed,
            data_seed=cfg.seed,
            bf16=device.startswith("cuda"),
            logging_steps=cfg.logging_steps,
            save_strategy="steps",
            save_steps=cfg.save_steps,
            save_total_limit=1,
            eval_strategy="steps" if evaluator else "no",
            eval_steps=cfg.eval_steps or max(cfg.logging_steps, steps_per_epoch // 2),
            report_to="none",
            dataloader_num_workers=0,
            disable_tqdm=False,
            **trainer_arguments(cfg.batch_size, device),  # the batch per process and, under a launch, DDP's settings
        )
        pruning = None
        if trial is not None:
            if evaluator is None:
                raise InputError(
                    "a tier-B trial needs dev evaluations: the dataset has no validation rows",
                    path=dataset_path,
                    fix="convert a validation split",
                )
            from rerank_lab.hpo_trial import callback

            pruning = callback(trial)
        callbacks = [pruning] if pruning is not None else None
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=train_rows, loss=loss, evaluator=evaluator, callbacks=callbacks)
        # resume only a run with the same settings on the same data (resume_fingerprint)
        resume = _last_checkpoint(checkpoints, fingerprint)
        if resume:
            log.info("resuming from %s", resume)
            if isinstance(loss, CurriculumLoss):  # the schedule goes on where the checkpoint left it
                loss.skip(json.loads((Path(resume) / "trainer_state.json").read_text())["global_step"])
        trainer.train(resume_from_checkpoint=resume)
        history = list(trainer.state.log_history)
        if evaluator is not None:
            final = evaluate_once(evaluator, model)  # {} on ranks other than 0
            # "base" metrics score the input order, where positives come first: meaningless here
            metrics.update({k: round(float(v), 6) for k, v in final.items() if k.startswith(f"{DEV_NAME}_") and "base" not in k})
        metrics.update({"train_examples": len(examples), "steps": trainer.state.global_step, "resumed": int(resume is not None)})
        if pruning is not None:  # the experiment says whether its trial was pruned, and where
            metrics.update({"trial_pruned": int(pruning.pruned_at is not None), "trial_steps": trainer.state.global_step})
        if isinstance(loss, CurriculumLoss):
            metrics["warmup_steps_used"] = loss.history.count(type(loss.warmup).__name__)
    metrics["train_seconds"] = round(time.time() - started, 1)
    if rank() != 0:  # one writer: rank 0 saves the model; the launcher writes plots and metrics
        return metrics, history
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp))
        drop_card_timings(tmp / "README.md")
        # wall time stays out of the model folder so that the same inputs give the same bytes
        stable = {k: v for k, v in metrics.items() if k not in VOLATILE}
        (tmp / "rerank_lab_train.json").write_text(
            json.dumps({"config": dataclasses.asdict(cfg), "metrics": stable}, indent=2, sort_keys=True) + "\n"
        )
    return metrics, history  # checkpoint_folder empties the checkpoints


def write_plots(history: list[dict[str, Any]], folder: Path) -> None:
    """``loss.tsv`` (step, loss) and ``dev.tsv`` (step, ``dev_mined_*`` metrics) for ``dvc plots``."""
    with atomic_dir(folder) as tmp:
        loss = ["step\tloss"] + [f"{h['step']}\t{h['loss']}" for h in history if "loss" in h]
        (tmp / "loss.tsv").write_text("\n".join(loss) + "\n")
        dev_keys = sorted({k for h in history for k in h if k.startswith(f"eval_{DEV_NAME}_") and "base" not in k})
        dev = ["step\t" + "\t".join(k.removeprefix("eval_") for k in dev_keys)]
        dev += [f"{h['step']}\t" + "\t".join(str(h.get(k, "")) for k in dev_keys) for h in history if any(k in h for k in dev_keys)]
        (tmp / "dev.tsv").write_text("\n".join(dev) + "\n")


# --- the stage contract (rerank_lab.stage) ------------------------------------------------------


def configure(params: dict[str, Any]) -> TrainSetup:
    """The ``train`` section; with ``train.trial`` set, the study it reports to (from ``hpo``)."""
    from rerank_lab.train_ddp import not_launched

    not_launched()  # before the runner makes any temporary
    cfg = parse(TrainConfig, section(params, "train"), "train")
    if cfg.trial is None:
        return TrainSetup(cfg)
    from rerank_lab.hpo_trial import link

    return TrainSetup(cfg, link(params, cfg.trial))


def run(setup: TrainSetup, inputs: dict[str, Any], outputs: dict[str, Path]) -> dict[str, float]:
    """Train on ``--dataset`` (grades from ``--qrels``) into ``--output`` and ``--plots``, resuming
    from ``--checkpoints`` (when omitted: the per-user cache's folder for these settings); the
    metrics include :data:`VOLATILE` keys (printed, not written)."""
    from rerank_lab.io.datasets import load_dataset
    from rerank_lab.io.qrels import read_qrels
    from rerank_lab.models import require_declared

    cfg = setup.config
    require_declared(cfg.model, inputs["models"], "train.model")
    dd = load_dataset(inputs["dataset"])
    qrels = None
    if inputs["qrels"] is not None:  # the graded judgments: one <split>.tsv per split the dataset has
        files = {split: inputs["qrels"] / f"{split}.tsv" for split in dd}
        qrels = {split: read_qrels(f) for split, f in files.items() if f.is_file()}
    metrics, history = train(cfg, dd, outputs["output"], outputs.get("checkpoints"), str(inputs["dataset"]), qrels=qrels, trial=setup.trial)
    write_plots(history, outputs["plots"])
    return metrics


def describe(setup: TrainSetup, metrics: dict[str, float]) -> str:
    """What the run cost (kept out of the metrics file)."""
    return "train: " + ", ".join(f"{k} {metrics[k]}" for k in VOLATILE if k in metrics)
