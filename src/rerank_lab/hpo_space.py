"""Tier B's settings: the ``hpo`` section of params.yaml, its search space and the study's name.

::

    hpo:
      n_trials: 8                  # the study's budget: trials in total, counting earlier runs
      space:                       # a params key -> a range or a list of choices
        train.learning_rate: {low: 2.0e-5, high: 3.0e-4, log: true}
        train.list_size: [4, 8, 16]
        train.epochs: {low: 1, high: 2}

A range with two ints (and an int ``step``, if any) draws ints, anything else floats; ``log: true``
draws on a log scale (``low`` > 0). A list draws one of its values. Everything here is read by both
sides of a trial: ``rerank-lab hpo`` (:mod:`rerank_lab.hpo`, which asks the study for values) and
the train stage (:mod:`rerank_lab.hpo_trial`, which reports the dev curve to the same study).

The study's name covers every params value but the space's own keys and the budget, the search
settings and the source of every module the train stage executes, so a changed pipeline, base
setting or code never continues a study begun by another; a larger ``n_trials`` continues it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Literal

from pydantic import Field

from rerank_lab.config import FieldError, Number, params_model, parse
from rerank_lab.errors import ConfigError
from rerank_lab.optuna_storage import refuse_password

Pruner = Literal["none", "median", "successive-halving", "hyperband", "threshold"]
# the trial's identity, set by rerank-lab hpo with -S: part of train's params, so a trial's (possibly
# pruned) model is never restored for an ordinary run with the same settings
TRIAL_KEY = "train.trial"
# params that decide nothing a trial computes: the budget, the tier-C count, where the study lives
NOT_IN_NAME = ("n_trials", "finalists", "storage", "study_name")


@params_model("hpo")
class HpoConfig:
    """The ``hpo`` section."""

    space: dict[str, Any]
    n_trials: int = Field(8, ge=1)
    seed: int = 0
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Pruner = "median"
    startup_trials: int = Field(2, ge=0)  # median: trials that finish before any is pruned
    warmup_steps: int = Field(0, ge=0)  # median, threshold: steps before a trial can be pruned
    prune_below: Number | None = None  # threshold: prune a trial whose dev metric falls below this
    metric: str = Field("dev_mined_ndcg@10", min_length=1)  # a key of train's metrics, reported at each dev evaluation
    stage: str = Field("train", min_length=1)  # the stage a tier-B trial runs (with everything upstream of it)
    finalists: int = Field(2, ge=0)  # tier C: the best trials run the whole pipeline (tune, evaluate)
    # any Optuna storage URL or journal:<file>; a relative file path lies in the per-user cache
    # (rerank_lab.cache), so every trial's train stage, queued or not, reports to the same study;
    # env:NAME: the URL in environment variable NAME (a URL with a password is refused here: params.yaml is in git)
    storage: str = Field("sqlite:///optuna.db", min_length=1)
    study_name: str | None = None  # None: derived (study_name below)

    def __post_init__(self) -> None:
        refuse_password(self.storage, "hpo")  # a server's URL comes from the environment: hpo.storage: env:NAME
        if self.pruner == "threshold" and self.prune_below is None:
            raise FieldError(("prune_below",), "is needed by the threshold pruner", None, fix="e.g. prune_below: 0.5")


def parse_config(params: dict[str, Any]) -> HpoConfig:
    """The ``hpo`` section, typed (its space is checked against params by :func:`rerank_lab.hpo.distributions`)."""
    if "hpo" not in params:
        raise ConfigError("params has no hpo section", fix="add hpo.space: a params key -> a range or a list (README, 'Tier B')")
    return parse(HpoConfig, params["hpo"], "hpo")


def code_digest() -> str:
    """A digest of the source of every module the train stage executes (its reporting included)."""
    from rerank_lab.deps import module_closure, source_digest

    return source_digest(module_closure("rerank_lab.train", "rerank_lab.hpo_trial"))


def study_name(params: dict[str, Any], cfg: HpoConfig) -> str:
    """``hpo.study_name``, or ``hpo-<digest>`` of the base params (the space's keys, the trial key,
    ``grid`` and :data:`NOT_IN_NAME` left out), the search settings and :func:`code_digest`."""
    if cfg.study_name:
        return cfg.study_name
    base = json.loads(json.dumps({k: v for k, v in params.items() if k not in ("grid", "hpo")}, default=str))
    for key in (*cfg.space, TRIAL_KEY):
        *parents, last = key.split(".")
        node = base
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    search = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IN_NAME}
    blob = json.dumps([base, search, code_digest()], sort_keys=True, default=str)
    return "hpo-" + hashlib.sha1(blob.encode()).hexdigest()[:12]


def make_pruner(cfg: HpoConfig):
    """The study's pruner; the trial side builds the same one (a pruner is not stored in the study)."""
    import optuna

    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.startup_trials, n_warmup_steps=cfg.warmup_steps)
    if cfg.pruner == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if cfg.pruner == "threshold":
        return optuna.pruners.ThresholdPruner(lower=cfg.prune_below, n_warmup_steps=cfg.warmup_steps)
    return optuna.pruners.NopPruner()


def make_sampler(cfg: HpoConfig):
    import optuna

    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=cfg.seed)
    return optuna.samplers.TPESampler(seed=cfg.seed)
