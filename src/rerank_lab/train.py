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
a rerun with the same settings resumes from the last one, other settings start afresh.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

import datasets

from rerank_lab.drops import check_drop
from rerank_lab.errors import ConfigError, InputError
from rerank_lab.io.atomic import atomic_dir
from rerank_lab.io.qrels import Qrels
from rerank_lab.losses import loss_spec, make_loss
from rerank_lab.losses.curriculum import CurriculumLoss
from rerank_lab.models import best_device, resolve_model
from rerank_lab.schema import TEACHER_PREFIX

log = logging.getLogger(__name__)

REGIMES: dict[str, tuple[str, ...]] = {
    "off-the-shelf": (),
    "binary": ("bce", "ce"),
    "pairwise": ("ranknet",),
    "listwise": ("listnet", "listmle", "plistmle", "lambda", "ranknet", "mnrl", "cmnrl"),
    "curriculum": ("listnet", "listmle", "plistmle", "lambda", "ranknet"),
    "distillation": ("margin_mse", "mse"),
}
GAINS = ("graded", "binary")
# what a run reports that depends on the machine and the run's history, not on its inputs: logged,
# kept out of the model folder and the DVC metrics file, so equal inputs give equal outputs
VOLATILE = ("train_seconds", "resumed")
DEV_NAME = "dev_mined"  # the training-time dev metrics: positives + mined negatives, not the first-stage pool


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The ``train`` section of params.yaml."""

    model: str = "all-MiniLM-L6-v2"
    regime: str = "listwise"
    loss: str | None = None
    warmup_loss: str = "bce"
    curriculum_fraction: float = 0.3
    teacher: str | None = None
    lambda_scheme: str = "ndcg2pp"
    learning_rate: float = 7e-5
    warmup_ratio: float = 0.1
    epochs: float = 1.0
    batch_size: int = 8
    list_size: int = 8
    max_length: int = 256
    max_queries: int | None = None
    max_dev_queries: int = 100
    no_positive: str = "error"  # rows without a positive (NOINFO claims) for a loss that needs one: error | skip
    max_drop_fraction: float = 0.5  # no_positive: skip stops when it would leave out more of the train split
    gains: str = "graded"  # list-format labels: graded (qrels grades) | binary (the 0/1 labels)
    logging_steps: int = 10
    save_steps: int = 100
    seed: int = 42

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise ConfigError(f"unknown regime {self.regime!r}", fix=f"use one of: {', '.join(REGIMES)}")
        loss = self.loss_name
        if self.regime != "off-the-shelf":
            loss_spec(loss)  # unknown names list the valid ones
            if loss not in REGIMES[self.regime]:
                raise ConfigError(
                    f"loss {loss!r} does not fit regime {self.regime!r}", fix=f"use one of: {', '.join(REGIMES[self.regime])}"
                )
        if self.regime == "curriculum":
            if loss_spec(self.warmup_loss).format != "pairs":
                raise ConfigError(f"warmup_loss {self.warmup_loss!r} is not pointwise", fix="use bce")
            if not 0.0 < self.curriculum_fraction < 1.0:
                raise ConfigError(f"curriculum_fraction must be in (0, 1), got {self.curriculum_fraction}", fix="e.g. 0.3")
        if self.regime == "distillation" and not self.teacher:
            raise ConfigError(
                "distillation needs train.teacher: the name of a teacher_scores.<name> column", fix="run teacher-score and name it"
            )
        if self.no_positive not in ("error", "skip"):
            raise ConfigError(f"no_positive must be 'error' or 'skip', got {self.no_positive!r}", fix="use skip to leave such rows out")
        if not 0.0 <= self.max_drop_fraction <= 1.0:
            raise ConfigError(f"max_drop_fraction must be in [0, 1], got {self.max_drop_fraction}", fix="e.g. 0.5")
        if self.gains not in GAINS:
            fix = "graded trains list losses on the qrels grades, binary on the 0/1 labels"
            raise ConfigError(f"gains must be one of {', '.join(GAINS)}, got {self.gains!r}", fix=fix)
        if self.list_size < 2:
            raise ConfigError(f"list_size must be >= 2 (a positive and a negative), got {self.list_size}", fix="e.g. 8")

    @property
    def loss_name(self) -> str:
        return self.loss or (REGIMES[self.regime][0] if REGIMES[self.regime] else "")

    @property
    def uses_grades(self) -> bool:
        """Whether the loss trains on list labels, which take the qrels grades with ``gains: graded``."""
        return self.regime != "off-the-shelf" and self.gains == "graded" and loss_spec(self.loss_name).format == "lists"

    def fingerprint(self) -> str:
        return hashlib.sha1(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]


# --- examples -------------------------------------------------------------------------------


def _split_row(row: dict, cfg: TrainConfig) -> tuple[list[int], list[int]]:
    pos = [i for i, label in enumerate(row["labels"]) if label]
    neg = [i for i, label in enumerate(row["labels"]) if not label]
    random.Random(f"{cfg.seed}:{row['id']}").shuffle(neg)
    return pos, neg[: cfg.list_size - 1]


def text_gains(row: dict, qrels: Qrels | None) -> list[float]:
    """Per text: the qrels grade of a labelled positive when it is > 0, else the 0/1 label.

    >>> row = {"id": "q1", "text_ids": ["d1", "d2", "d3", "d4"], "labels": [1, 1, 0, 1]}
    >>> text_gains(row, {"q1": {"d1": 2, "d2": 1, "d3": 2, "d4": 0}})  # d3 unlabelled, d4 graded 0
    [2.0, 1.0, 0.0, 1.0]
    >>> text_gains(row, None)
    [1.0, 1.0, 0.0, 1.0]
    """
    judged = (qrels or {}).get(row["id"], {})
    return [float(judged[d]) if label and judged.get(d, 0) > 0 else float(label) for d, label in zip(row["text_ids"], row["labels"])]


def build_examples(
    ds: datasets.Dataset, fmt: str, cfg: TrainConfig, path: str = "train split", qrels: Qrels | None = None
) -> datasets.Dataset:
    """Lay the contract's rows out in the format a loss trains on (see rerank_lab.losses).

    ``qrels`` (this split's graded judgments) give list labels with ``gains: graded``; without
    them a list's labels are the 0/1 labels.
    """
    teacher_col = f"{TEACHER_PREFIX}{cfg.teacher}" if cfg.teacher else None
    if fmt.startswith("teacher") and teacher_col not in ds.column_names:
        have = [c[len(TEACHER_PREFIX) :] for c in ds.column_names if c.startswith(TEACHER_PREFIX)]
        raise InputError(
            f"no teacher column {teacher_col!r} (teachers present: {have or 'none'})",
            path=path,
            fix="add it with the teacher-score stage, or set train.teacher to a present one",
        )
    rows = ds.to_list()
    if cfg.no_positive == "skip" and fmt not in ("pairs", "classes", "teacher-pairs"):
        kept = [r for r in rows if any(r["labels"])]  # pointwise losses still learn from all-negative rows
        fix = "these rows have no positive text: check the dataset's labels, or train a pointwise loss (bce) that uses them"
        key = "train.max_drop_fraction"
        check_drop(len(rows), len(kept), cfg.max_drop_fraction, stage="train", split="train", key=key, fix=fix, path=path)
        rows = kept
    if cfg.max_queries:
        rows = rows[: cfg.max_queries]
    out: list[dict[str, Any]] = []
    n_neg = cfg.list_size - 1
    for row in rows:
        pos, neg = _split_row(row, cfg)
        texts, labels = row["texts"], row["labels"]
        teacher = row.get(teacher_col) if teacher_col else None
        if fmt in ("pairs", "classes", "teacher-pairs"):
            for i in pos + neg:
                target = float(teacher[i]) if fmt == "teacher-pairs" else (int(labels[i]) if fmt == "classes" else float(labels[i]))
                out.append({"query": row["query"], "text": texts[i], "label": target})
            continue
        if not pos:
            raise InputError(
                f"query {row['id']} has no positive text, which a {fmt.split('-')[-1]}-format loss needs",
                path=path,
                record=f"record {row['id']}",
                fix="drop queries without a positive (e.g. NOINFO claims) or use a pointwise loss (bce)",
            )
        if fmt == "lists":
            gains = text_gains(row, qrels) if cfg.gains == "graded" else [float(x) for x in labels]
            for p in pos:
                lower = [i for i in pos if gains[i] < gains[p]]  # empty with binary gains
                random.Random(f"{cfg.seed}:{row['id']}:{p}").shuffle(lower)
                idx = ([p, *lower[: (cfg.list_size - 1) // 2], *neg])[: cfg.list_size]
                out.append({"query": row["query"], "docs": [texts[i] for i in idx], "labels": [gains[i] for i in idx]})
            continue
        if len(neg) < n_neg:
            raise InputError(
                f"query {row['id']} has {len(neg)} negatives, the loss needs {n_neg}",
                path=path,
                record=f"record {row['id']}",
                fix="mine more negatives (mine.num_negatives) or lower train.list_size",
            )
        for p in pos:
            ex = {"query": row["query"], "positive": texts[p], **{f"negative_{j + 1}": texts[i] for j, i in enumerate(neg)}}
            if fmt == "teacher-groups":
                ex["label"] = [float(teacher[i]) for i in [p, *neg]]
            out.append(ex)
    if not out:
        raise InputError("no training examples", path=path, fix="check that the train split has rows with texts")
    return datasets.Dataset.from_list(out)


def dev_samples(ds: datasets.Dataset | None, limit: int) -> list[dict]:
    """Validation rows as CrossEncoderRerankingEvaluator samples (rows with a positive only)."""
    if ds is None:
        return []
    samples = []
    for row in ds.to_list():
        pos = [t for t, label in zip(row["texts"], row["labels"]) if label]
        if pos and len(pos) < len(row["texts"]):
            samples.append({"query": row["query"], "positive": pos, "documents": list(row["texts"])})
        if len(samples) == limit:
            break
    return samples


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


def _last_checkpoint(folder: Path, fingerprint: str) -> str | None:
    """The newest checkpoint in ``folder`` if it was written with the same settings."""
    stamp = folder / "settings.sha1"
    if not stamp.is_file() or stamp.read_text().strip() != fingerprint:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(fingerprint)
        return None
    # a checkpoint cut off while saving has no trainer_state.json (written last): skip it
    ckpts = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    ckpts.sort(key=lambda p: int(p.name.split("-")[1]))
    return str(ckpts[-1]) if ckpts else None


def train(
    cfg: TrainConfig,
    dd: datasets.DatasetDict,
    out: Path,
    checkpoints: Path,
    dataset_path: str = "dataset",
    qrels: dict[str, Qrels] | None = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Train (or, for R0, just load) a cross-encoder and save it to ``out``; returns metrics and the log.

    ``qrels`` maps split -> graded judgments; ``gains: graded`` with a list-format loss needs ``train``.
    """
    import transformers
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments

    transformers.set_seed(cfg.seed)  # the fresh classification head is drawn from this seed
    device = best_device()
    spec = loss_spec(cfg.loss_name) if cfg.regime != "off-the-shelf" else None
    train_qrels = (qrels or {}).get("train") if cfg.uses_grades else None
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
        samples = dev_samples(dd.get("validation"), cfg.max_dev_queries)
        evaluator = _dev_evaluator(samples) if samples else None
        args = CrossEncoderTrainingArguments(
            output_dir=str(checkpoints),
            num_train_epochs=cfg.epochs,
            per_device_train_batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            warmup_steps=int(cfg.warmup_ratio * total_steps),
            lr_scheduler_type="linear",
            seed=cfg.seed,
            data_seed=cfg.seed,
            bf16=device == "cuda",
            logging_steps=cfg.logging_steps,
            save_strategy="steps",
            save_steps=cfg.save_steps,
            save_total_limit=1,
            eval_strategy="steps" if evaluator else "no",
            eval_steps=max(cfg.logging_steps, steps_per_epoch // 2),
            report_to="none",
            dataloader_num_workers=0,
            disable_tqdm=False,
        )
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=examples, loss=loss, evaluator=evaluator)
        # resume only a run with the same settings on the same data (saved splits carry content hashes)
        grades = hashlib.sha1(json.dumps(train_qrels, sort_keys=True).encode()).hexdigest()[:16] if train_qrels is not None else "binary"
        resume = _last_checkpoint(checkpoints, f"{cfg.fingerprint()}-{dd['train']._fingerprint}-{grades}")
        if resume:
            log.info("resuming from %s", resume)
            if isinstance(loss, CurriculumLoss):  # the schedule goes on where the checkpoint left it
                loss.skip(json.loads((Path(resume) / "trainer_state.json").read_text())["global_step"])
        trainer.train(resume_from_checkpoint=resume)
        history = list(trainer.state.log_history)
        if evaluator is not None:
            final = evaluator(model)
            # "base" metrics score the input order, where positives come first: meaningless here
            metrics.update({k: round(float(v), 6) for k, v in final.items() if k.startswith(f"{DEV_NAME}_") and "base" not in k})
        metrics.update({"train_examples": len(examples), "steps": trainer.state.global_step, "resumed": int(resume is not None)})
        if isinstance(loss, CurriculumLoss):
            metrics["warmup_steps_used"] = loss.history.count(type(loss.warmup).__name__)
    metrics["train_seconds"] = round(time.time() - started, 1)
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp))
        _drop_timings(tmp / "README.md")
        # wall time stays out of the model folder so that the same inputs give the same bytes
        stable = {k: v for k, v in metrics.items() if k not in VOLATILE}
        (tmp / "rerank_lab_train.json").write_text(
            json.dumps({"config": dataclasses.asdict(cfg), "metrics": stable}, indent=2, sort_keys=True) + "\n"
        )
    if spec is not None:
        shutil.rmtree(checkpoints, ignore_errors=True)  # finished: nothing left to resume
        checkpoints.mkdir(parents=True, exist_ok=True)
    return metrics, history


def _drop_timings(card: Path) -> None:
    """Remove the "Training Time" section sentence-transformers writes into the model card."""
    if not card.is_file():
        return
    text = card.read_text(encoding="utf-8")
    start = text.find("### Training Time")
    if start >= 0:
        end = text.find("\n#", start + 1)
        text = text[:start] + (text[end + 1 :] if end >= 0 else "")
        card.write_text(text, encoding="utf-8")


def write_plots(history: list[dict[str, Any]], folder: Path) -> None:
    """``loss.tsv`` (step, loss) and ``dev.tsv`` (step, ``dev_mined_*`` metrics) for ``dvc plots``."""
    with atomic_dir(folder) as tmp:
        loss = ["step\tloss"] + [f"{h['step']}\t{h['loss']}" for h in history if "loss" in h]
        (tmp / "loss.tsv").write_text("\n".join(loss) + "\n")
        dev_keys = sorted({k for h in history for k in h if k.startswith(f"eval_{DEV_NAME}_") and "base" not in k})
        dev = ["step\t" + "\t".join(k.removeprefix("eval_") for k in dev_keys)]
        dev += [f"{h['step']}\t" + "\t".join(str(h.get(k, "")) for k in dev_keys) for h in history if any(k in h for k in dev_keys)]
        (tmp / "dev.tsv").write_text("\n".join(dev) + "\n")
